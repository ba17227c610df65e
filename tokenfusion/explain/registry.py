"""Which explanation methods apply to a model, with the layers and token kinds each can target."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import TokenFusionModel
from . import attention, attribution
from ._utils import ExplainError
from .cam import CAM_METHODS
from .result import Explanation

__all__ = ["ATTRIBUTIONS", "MethodInfo", "available_methods", "resolve"]

Target = tuple[str | None, str | None]  # (layer, kind)


@dataclass(frozen=True)
class MethodInfo:
    """One method as it applies to one model.

    ``family``: ``"attention"``, ``"cam"`` or ``"attribution"``. ``targets``: every allowed
    ``(layer, kind)`` pair (``None`` where the method takes no layer or no kind); ``default``: the
    pair used when neither is given. ``options``: keyword options it accepts.
    """

    name: str
    family: str
    targets: tuple[Target, ...]
    default: Target
    options: tuple[str, ...]

    @property
    def layers(self) -> list[str | None]:
        return list(dict.fromkeys(layer for layer, _ in self.targets))

    @property
    def kinds(self) -> list[str | None]:
        return list(dict.fromkeys(kind for _, kind in self.targets))


ATTRIBUTIONS: dict[str, Callable[..., Explanation]] = {
    "integrated_gradients": attribution.integrated_gradients,
    "smoothgrad": attribution.smoothgrad,
    "occlusion": attribution.occlusion,
}
_CAM_OPTIONS = ("batch_size", "eigen_smooth")


def _options(fn: Callable[..., Any], skip: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(fn).parameters if p not in skip + ("trace", "logits"))


def available_methods(model: TokenFusionModel) -> list[MethodInfo]:
    """Every method that applies to ``model``, with its allowed ``(layer, kind)`` targets, read from
    ``model.structure`` (no forward pass).

    ``cnn``: CAMs on trunk stages and attributions (no attention). ``vit``: attention, rollout and
    CAMs on patch tokens. ``early``/``late``: both kinds everywhere. ``layerwise``: patch-token
    attention and rollout, ``cross_attention`` over CNN tokens, CAMs on trunk stages, patch
    tokens and the CNN keys of each cross block.
    """
    structure = model.structure
    base = ("model", "x", "layer", "kind", "target")
    methods = []
    pairs = [(layer, kind) for s in structure.streams for layer in s.layers for kind in s.kinds]
    if pairs:
        kinds = list(dict.fromkeys(k for _, k in pairs))
        default_kind = "patch" if "patch" in kinds else kinds[0]
        default = [p for p in pairs if p[1] == default_kind][-1]
        methods.append(MethodInfo("attention", "attention", tuple(pairs), default,
                                  _options(attention.attention_map, base)))
        methods.append(MethodInfo("rollout", "attention", tuple((None, k) for k in kinds), (None, default_kind),
                                  _options(attention.attention_rollout, base)))
    if structure.cross_entries:
        cross = tuple((e.layer, "cnn") for e in structure.cross_entries)
        methods.append(MethodInfo("cross_attention", "attention", cross, cross[-1],
                                  _options(attention.cross_attention_map, base)))
    targets = tuple((t.layer, t.kind) for t in structure.cam_targets)
    default_cam = structure.default_cam_target()
    methods += [MethodInfo(name, "cam", targets, (default_cam.layer, default_cam.kind),
                           _CAM_OPTIONS + (("channels",) if name == "scorecam_topk" else ()))
                for name in CAM_METHODS]
    methods += [
        MethodInfo(name, "attribution", ((None, None),), (None, None), _options(fn, base))
        for name, fn in ATTRIBUTIONS.items()
    ]
    return methods


def resolve(
    model: TokenFusionModel, method: str, layer: str | None, kind: str | None, options: dict[str, Any]
) -> tuple[MethodInfo, str | None, str | None]:
    """Check a request against :func:`available_methods`: ``(info, layer, kind)`` with the method's
    default when both are None, the last layer holding ``kind`` when only ``kind`` is given; an
    :class:`ExplainError` listing what is allowed otherwise."""
    methods = {m.name: m for m in available_methods(model)}
    if method not in methods:
        raise ExplainError(f"Method {method!r} does not apply to a {model.config.arch!r} model. "
                           f"Expected one of {list(methods)}")
    info = methods[method]
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ExplainError(f"Unknown options {unknown} for {method!r}. Expected some of {list(info.options)}")
    if layer is None and kind is None:
        return info, *info.default
    if (layer, kind) in info.targets:
        return info, layer, kind
    matches = [t for t in info.targets if (layer is None or t[0] == layer) and (kind is None or t[1] == kind)]
    if not matches:
        raise ExplainError(f"{method!r} on {model.config.arch!r} cannot target layer={layer!r}, kind={kind!r}. "
                           f"Expected (layer, kind) one of {list(info.targets)}")
    if layer is not None and len({t[1] for t in matches}) > 1:
        raise ExplainError(f"Layer {layer!r} holds {[t[1] for t in matches]} tokens: pass kind= one of them")
    return info, *matches[-1]
