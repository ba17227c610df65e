"""Which explanation methods apply to a model, and one dispatcher to run any of them."""
from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..models import TokenFusionModel, Trace
from . import attention, attribution
from ._utils import ExplainError, as_batch, traced
from .cam import CAM_METHODS, cam, cam_targets, default_cam_target
from .result import Explanation

__all__ = ["MethodInfo", "available_methods", "explain"]

Target = tuple[str | None, str | None]  # (layer, kind)


@dataclass(frozen=True)
class MethodInfo:
    """One method as it applies to one model.

    ``family``: ``"attention"``, ``"cam"`` or ``"attribution"``. ``targets``: every allowed
    ``(layer, kind)`` pair (``None`` where the method takes no layer or no kind); ``default``: the
    pair :func:`explain` uses when neither is given. ``options``: keyword options it accepts.
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


_ATTRIBUTIONS: dict[str, Callable[..., Explanation]] = {
    "integrated_gradients": attribution.integrated_gradients,
    "smoothgrad": attribution.smoothgrad,
    "occlusion": attribution.occlusion,
}
_CAM_OPTIONS = ("batch_size", "eigen_smooth")


def _options(fn: Callable[..., Any], skip: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(fn).parameters if p not in skip + ("trace", "logits"))


def _methods(model: TokenFusionModel, trace: Trace) -> list[MethodInfo]:
    methods = []
    base = ("model", "x", "layer", "kind", "target")
    pairs = [(n, k) for n, lay in trace.layouts.items() for k in lay.kinds if k != "cls"]
    if pairs:
        kinds = list(dict.fromkeys(k for _, k in pairs))
        default_kind = "patch" if "patch" in kinds else kinds[0]
        default = [p for p in pairs if p[1] == default_kind][-1]
        options = _options(attention.attention_map, base)
        methods.append(MethodInfo("attention", "attention", tuple(pairs), default, options))
        rollout = tuple((None, k) for k in kinds if _rollout_reaches(trace, k))
        methods.append(MethodInfo("rollout", "attention", rollout, (None, default_kind),
                                  _options(attention.attention_rollout, base)))
    if trace.cross_attention:
        pairs = tuple((n, "cnn") for n in trace.cross_attention)
        methods.append(MethodInfo("cross_attention", "attention", pairs, pairs[-1],
                                  _options(attention.cross_attention_map, base)))
    targets = tuple(cam_targets(model, trace))
    default = default_cam_target(model, trace)
    methods += [MethodInfo(name, "cam", targets, default, _CAM_OPTIONS) for name in CAM_METHODS]
    methods += [
        MethodInfo(name, "attribution", ((None, None),), (None, None), _options(fn, base))
        for name, fn in _ATTRIBUTIONS.items()
    ]
    return methods


def _rollout_reaches(trace: Trace, kind: str) -> bool:
    """Rollout of ``kind`` is defined when the readout's sequence, or a stream feeding it, holds ``kind``."""
    return any(kind in lay.kinds for lay in trace.layouts.values())


def available_methods(model: TokenFusionModel, x: Tensor | None = None) -> list[MethodInfo]:
    """Every method that applies to ``model``, with its allowed ``(layer, kind)`` targets.

    ``cnn``: CAMs on trunk stages and attributions (no attention). ``vit``: attention, rollout and
    CAMs on patch tokens. ``early``/``late``: both kinds everywhere. ``layerwise``: patch-token
    attention and rollout, ``cross_attention`` over CNN tokens, CAMs on trunk stages, patch
    tokens and the CNN keys of each cross block. Layers come from one traced forward on ``x``
    (default: a blank image of the model's ``img_size``).
    """
    if x is None:
        size = model.config.img_size
        x = torch.zeros(1, 3, size, size)
    return _methods(model, traced(model, as_batch(x))[1])


def explain(
    model: TokenFusionModel, x: Tensor, method: str, layer: str | None = None, target: int | None = None,
    **options: Any,
) -> Explanation:
    """Explain one normalised image ``x`` ``(3, H, W)`` or ``(1, 3, H, W)`` with ``method``.

    ``layer`` and ``kind`` (an option) must be one of the method's ``targets`` in
    :func:`available_methods`; when both are None the method's default is used, when only
    ``kind`` is given the last layer holding that kind. ``target`` defaults to the predicted class.
    Other ``options`` go to the method (``head``, ``head_fusion``, ``discard_ratio``, ``n_steps``...).
    ``Explanation.seconds`` is the time of this whole call, its traced forward included.
    """
    start = time.perf_counter()
    x = as_batch(x)
    logits, trace = traced(model, x)
    methods = {m.name: m for m in _methods(model, trace)}
    if method not in methods:
        raise ExplainError(f"Method {method!r} does not apply to a {model.config.arch!r} model. "
                           f"Expected one of {list(methods)}")
    info = methods[method]
    kind = options.pop("kind", None)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ExplainError(f"Unknown options {unknown} for {method!r}. Expected some of {list(info.options)}")
    if layer is None and kind is None:
        layer, kind = info.default
    elif (layer, kind) not in info.targets:
        matches = [t for t in info.targets if (layer is None or t[0] == layer) and (kind is None or t[1] == kind)]
        if not matches:
            raise ExplainError(f"{method!r} on {model.config.arch!r} cannot target layer={layer!r}, kind={kind!r}. "
                               f"Expected (layer, kind) one of {list(info.targets)}")
        if layer is not None and len({t[1] for t in matches}) > 1:
            raise ExplainError(f"Layer {layer!r} holds {[t[1] for t in matches]} tokens: pass kind= one of them")
        layer, kind = matches[-1]
    if info.family == "cam":
        result = cam(model, x, method, layer, target, kind, trace=trace, logits=logits, **options)
    elif info.family == "attribution":
        result = _ATTRIBUTIONS[method](model, x, target, **options)
    elif method == "attention":
        result = attention.attention_map(model, x, layer, kind, **options, target=target, trace=trace, logits=logits)
    elif method == "rollout":
        result = attention.attention_rollout(model, x, kind, **options, target=target, trace=trace, logits=logits)
    else:
        result = attention.cross_attention_map(model, x, layer, **options, target=target, trace=trace, logits=logits)
    result.seconds = time.perf_counter() - start  # the whole call, traced forward included
    return result
