"""The table of explanation methods, and which of them apply to a model.

:data:`METHODS` is the one place a method is named: each entry is its :class:`~tokenfusion.explain.spec.Method`
spec. Adding a method is one class in a module of its own and one line here (``docs/design.md``,
"The method spec").
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..models import TokenFusionModel
from ._utils import ExplainError
from .attention import Attention, CrossAttention, Rollout
from .attribution import IntegratedGradients, Occlusion, SmoothGrad
from .cam import Cam, TopChannelsCam
from .relevance import Relevance
from .spec import Method, Request, Target

__all__ = ["METHODS", "MethodInfo", "Resolved", "available_methods", "resolve"]

#: Every explanation method, by name, in the order the app and the scoring command list them.
METHODS: dict[str, Method] = {m.name: m for m in (
    Attention(),
    Rollout(),
    CrossAttention(),
    Relevance(),
    Cam("gradcam", "GradCAM"),
    Cam("gradcam++", "GradCAMPlusPlus"),
    Cam("hirescam", "HiResCAM"),
    Cam("xgradcam", "XGradCAM"),
    Cam("layercam", "LayerCAM"),
    Cam("eigencam", "EigenCAM", gradients=False),
    Cam("eigengradcam", "EigenGradCAM"),
    Cam("gradcam-elementwise", "GradCAMElementWise"),
    Cam("scorecam", "ScoreCAM", gradients=False, per_channel=1),
    TopChannelsCam("scorecam_topk", "TopChannelsScoreCAM", gradients=False, per_channel=1),
    Cam("ablationcam", "AblationCAM", gradients=False, per_channel=2),
    IntegratedGradients(),
    SmoothGrad(),
    Occlusion(),
)}


@dataclass(frozen=True)
class MethodInfo:
    """One method as it applies to one model.

    ``family``: ``"attention"``, ``"cam"``, ``"gradient"`` or ``"perturbation"``. ``targets``: every
    allowed ``(layer, kind)`` pair (``None`` where the method takes no layer or no kind);
    ``default``: the pair used when neither is given. ``options``: keyword options it accepts.
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


def available_methods(model: TokenFusionModel) -> list[MethodInfo]:
    """Every method of :data:`METHODS` that applies to ``model``, with its allowed ``(layer, kind)``
    targets, read from ``model.structure`` (no forward pass).

    ``cnn``: CAMs on trunk stages and attributions (no attention). ``vit``: attention, rollout and
    CAMs on patch tokens. ``early``/``late``: both kinds everywhere. ``layerwise``: patch-token
    attention and rollout, ``cross_attention`` over CNN tokens, CAMs on trunk stages, patch
    tokens and the CNN keys of each cross block.
    """
    found = []
    for method in METHODS.values():
        targets = method.targets(model.structure)
        if targets is not None:
            found.append(MethodInfo(method.name, method.family, targets.pairs, targets.default, tuple(method.options)))
    return found


@dataclass(frozen=True)
class Resolved:
    """A :class:`~tokenfusion.explain.spec.Request` checked against a model: its ``method`` spec, the
    ``layer`` and ``kind`` it targets, and every option (``options``, defaults filled in)."""

    method: Method
    layer: str | None
    kind: str | None
    options: Mapping[str, Any]


def resolve(model: TokenFusionModel, request: Request) -> Resolved:
    """Check ``request`` against ``model`` (the one place a request's layer and kind are resolved):
    the method's default target when neither layer nor kind is given, the last layer holding
    ``kind`` when only it is; an :class:`ExplainError` listing what is allowed otherwise."""
    method = METHODS.get(request.method)
    targets = method.targets(model.structure) if method is not None else None
    if targets is None:
        raise ExplainError(f"Method {request.method!r} does not apply to a {model.config.arch!r} model. "
                           f"Expected one of {[m.name for m in available_methods(model)]}")
    options = method.settings(request.kwargs)
    layer, kind = method.resolve(model.structure, targets, request.layer, request.kind)
    return Resolved(method, layer, kind, options)
