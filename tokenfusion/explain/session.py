"""One explanation session per image: one traced forward, every method served from it.

``Explainer(model, x)`` runs ``model(x, trace=True)`` once; its methods answer every question the
app, the notebooks and the scoring command ask about that image (maps of every method, the
prediction, fusion weights, branch ablation, deletion and insertion, the randomisation test, the
anatomy of the forward) without running the traced forward again, as captum's attribution
objects wrap a forward once and pytorch-grad-cam's CAM objects hold their hooks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from torch import Tensor

from .. import interventions
from ..interventions import Region
from ..models import TokenFusionModel, Trace
from ._utils import ExplainError, as_batch, device_of, resolve_target, traced
from .anatomy import Anatomy, anatomy, sequence_table, strongest_channels
from .attention import rollout, rollout_path
from .cost import Progress, reporting
from .fusion import BranchAblation, FusionWeights, branch_ablation, fusion_weights_of
from .metrics import Curve, Randomisation, deletion_curve, insertion_curve, randomisation_check
from .prediction import Prediction, top_k
from .registry import MethodInfo, Resolved, available_methods, resolve
from .result import Explanation
from .spec import Request, Session
from .tokens import TokenAttention, token_attention

__all__ = ["Explainer", "Faithfulness", "Inside", "WhatIf", "explain"]


@dataclass
class Faithfulness:
    """A map and its deletion and insertion curves (Petsiuk et al. 2018)."""

    saliency: Explanation
    deletion: Curve
    insertion: Curve


@dataclass
class Inside:
    """What one image becomes inside the model: its :class:`Anatomy`, one row per token sequence,
    the rollout of each kind of token grown one layer at a time (``(layer, grid (h, w))``), and the
    strongest channels of the last trunk stage (``(channel, map (h, w))``)."""

    anatomy: Anatomy
    sequences: list[dict[str, str | int]]
    rollout: dict[str, list[tuple[str, Tensor]]]
    channels: list[tuple[int, Tensor]]


@dataclass
class WhatIf:
    """The model run again with ``kind`` tokens (every kind when None), or only those under ``region``,
    replaced by their ``mode`` (mean or zero) at every place that reads them from ``from_layer`` on
    (1-based, ``places`` names them; a ``layerwise`` cross-attention is closed, or no longer sees the
    region's keys): its top-k ``prediction``, its ``fusion`` weights and its rollout ``maps`` per kind,
    to set beside the unchanged ones."""

    kind: str | None
    from_layer: int
    mode: str
    places: list[str]
    prediction: Prediction
    fusion: FusionWeights
    maps: dict[str, Explanation]
    region: Region | None = None


class Explainer:
    """Every explanation of one normalised image ``x`` ``(3, H, W)`` or ``(1, 3, H, W)``.

    The traced forward runs once, in eval mode, when the session is made: ``logits`` ``(1, classes)``
    and ``trace`` are kept. Requests are checked against :func:`available_methods` (the model's
    declared structure); an :class:`~tokenfusion.explain.ExplainError` says what is allowed.
    """

    def __init__(self, model: TokenFusionModel, x: Tensor) -> None:
        self.model = model
        self.x = as_batch(x).to(device_of(model))
        self.logits, self.trace = traced(model, self.x)

    @cached_property
    def methods(self) -> dict[str, MethodInfo]:
        """Every method that applies to the model, by name."""
        return {m.name: m for m in available_methods(self.model)}

    def explain(
        self, method: str, layer: str | None = None, target: int | None = None, *, kind: str | None = None,
        progress: Progress | None = None, **options: Any,
    ) -> Explanation:
        """The map of ``method`` at ``layer``/``kind`` (one of the method's targets; its default when
        both are None, the last layer holding ``kind`` when only ``kind`` is given) for ``target``
        (default: the predicted class): :meth:`answer` of ``Request.of(method, layer, kind, **options)``.
        ``options`` go to the method (``head``, ``discard_ratio``, ``n_steps``...)."""
        return self.answer(Request.of(method, layer, kind, **options), target, progress=progress)

    def answer(self, request: Request, target: int | None = None, *, progress: Progress | None = None) -> Explanation:
        """The map ``request`` asks for, for ``target`` (default: the predicted class). ``seconds`` is
        the method's own time; the shared forward is not counted. ``progress(done, total)``, when
        given, is called after every forward (batch) the method runs, with the images done of the
        forwards it needs (:func:`~tokenfusion.explain.cost.reporting`); an exception it raises ends
        the method there."""
        found = resolve(self.model, request)
        if progress is None:
            return self._answer(found, target)
        with reporting(self.model, self.x, progress, found):
            return self._answer(found, target)

    def _answer(self, found: Resolved, target: int | None, forward: Session | None = None) -> Explanation:
        """The map of ``found`` from this session's traced forward, or from another ``forward`` of its image."""
        forward = forward or self
        start = time.perf_counter()
        target = resolve_target(forward.logits, target)
        grid, layer = found.method.grid(forward, found.layer, found.kind, target, found.options)
        return Explanation.from_grid(grid, tuple(self.x.shape[-2:]), method=found.method.name, layer=layer,
                                     target=target, seconds=time.perf_counter() - start, kind=found.kind)

    def predict(self, class_names: list[str], k: int = 5) -> Prediction:
        """The ``k`` most probable classes, from the session's logits."""
        return top_k(self.logits, class_names, k)

    def fusion(self) -> FusionWeights:
        """Attention shares per kind of token and layer, and the gates, from the session's trace."""
        return fusion_weights_of(self.trace)

    def ablation(self) -> BranchAblation:
        """The predicted class's logit with every CNN, or every patch, token replaced by its mean."""
        return branch_ablation(self.model, self.x)

    def faithfulness(
        self, method: str, layer: str | None = None, kind: str | None = None, *, baseline: str = "blur",
        steps: int = 20, progress: Progress | None = None,
    ) -> Faithfulness:
        """The map of ``method`` and the target's probability as its most salient pixels are deleted
        and inserted, ``steps`` steps each. ``progress(done, total)``: forward passes, the map's
        (as :meth:`explain` counts them) then ``steps + 1`` images per curve."""
        curve = steps + 1
        passes = 0

        def of_map(done: int, total: int) -> None:
            nonlocal passes
            passes = total
            progress(done, total + 2 * curve)

        saliency = self.explain(method, layer, kind=kind, **({"progress": of_map} if progress else {}))
        options = dict(steps=steps, baseline=baseline)
        deletion = deletion_curve(self.model, self.x, saliency.map, saliency.target, **options)
        if progress:
            progress(passes + curve, passes + 2 * curve)
        insertion = insertion_curve(self.model, self.x, saliency.map, saliency.target, **options)
        if progress:
            progress(passes + 2 * curve, passes + 2 * curve)
        return Faithfulness(saliency, deletion, insertion)

    def randomisation(
        self, method: str, layer: str | None = None, kind: str | None = None, *, steps: int | None = None,
        target: int | None = None, progress: Progress | None = None,
    ) -> Randomisation:
        """The cascading randomisation test of the map: the trained and every randomised map are made
        by the same request (method, layer, kind, target) on a session of their own.
        ``progress(done, total)``: maps made, of the trained one and one per randomised copy."""
        found = resolve(self.model, Request.of(method, layer, kind))
        reference = self._answer(found, target)
        pinned = Request(method, found.layer, found.kind)  # the copies' request: the trained map's target

        def again(model: TokenFusionModel, image: Tensor) -> Explanation:
            return Explainer(model, image).answer(pinned, reference.target)

        return randomisation_check(self.model, self.x, again, steps=steps, reference=reference, progress=progress)

    def token_attention(
        self, layer: str, kind: str, cell: tuple[int, int], head: int | str | None = "mean"
    ) -> TokenAttention:
        """Where the ``kind`` token at grid ``cell`` looks at ``layer``, and where it sits in the image."""
        return token_attention(self.model, self.x, self.trace, layer, kind, cell, head)

    def token_grid(self, layer: str, kind: str) -> tuple[int, int]:
        """The ``(h, w)`` grid of ``kind`` tokens in the sequence of ``layer``."""
        return self.trace.layouts[layer].grid(kind)

    def places(self, kind: str | None = None) -> list[str]:
        """The modules that read ``kind`` tokens, in forward order: what :meth:`what_if` can remove
        (:func:`tokenfusion.interventions.places`; ``kind`` None: every kind, as a region is removed)."""
        return interventions.places(self.model.structure, kind)

    def what_if(self, kind: str | None, from_layer: int = 1, mode: str = "mean", class_names: list[str] | None = None,
                k: int = 5, *, region: Region | None = None) -> WhatIf:
        """Remove ``kind`` tokens (every kind when None; replace them by their ``mode``) from place
        ``from_layer`` of :meth:`places` on and run the traced forward again: prediction, fusion weights
        and rollout maps with the tokens gone. With ``region`` only the tokens under it go: a patch
        token whose patch overlaps it, a CNN token whose position (the centre of its cell) falls in it
        (:func:`tokenfusion.interventions.ablate_region`)."""
        kinds = self.model.structure.token_kinds
        if kind is None and region is None:
            raise ExplainError("Say what to remove: a kind of token, a region of the image, or both")
        if kind is not None and kind not in kinds:
            raise ExplainError(f"A {self.model.config.arch!r} model has no {kind!r} tokens. Expected one of {list(kinds)}")
        if region is None:
            with interventions.ablate_from(self.model, self.trace.layouts, kind, from_layer, mode):  # type: ignore[arg-type]
                logits, trace = traced(self.model, self.x)
            places = self.places(kind)[from_layer - 1:]
        else:
            layouts = {**self.trace.layouts, **{n: c.key_layout for n, c in self.trace.cross_attention.items()}}
            chosen = (kind,) if kind else kinds
            with interventions.ablate_region(self.model, layouts, _checked(region), chosen, from_layer, mode) as places:
                logits, trace = traced(self.model, self.x)
        names = class_names or [str(i) for i in range(logits.shape[-1])]
        after, rollout = _Forward(self.model, self.x, logits, trace), self.methods.get("rollout")
        maps = {kind: self._answer(resolve(self.model, Request("rollout", kind=kind)), None, after)
                for kind in kinds if rollout and (None, kind) in rollout.targets}
        return WhatIf(kind, from_layer, mode, places, top_k(logits, names, k), fusion_weights_of(trace), maps, region)

    def rollout_steps(self, kind: str) -> list[tuple[str, Tensor]]:
        """Attention rollout of ``kind`` tokens grown one layer at a time along its path to the head:
        ``(last layer, grid (h, w))`` for ``upto = 1, 2, ...`` of :func:`~tokenfusion.explain.attention.rollout`;
        the last is the ``"rollout"`` map. Empty where no self-attention carries ``kind`` tokens."""
        structure = self.model.structure
        steps = range(1, len(rollout_path(structure, self.trace, kind)) + 1)
        return [(layer, grid.cpu()) for grid, layer in (rollout(structure, self.trace, kind, upto=n) for n in steps)]

    def inside(self, channels: int = 6) -> Inside:
        """The anatomy of this forward (for the Learn page and notebook 01)."""
        features = self.trace.cnn_features
        return Inside(
            anatomy=anatomy(self.model, self.trace),
            sequences=sequence_table(self.trace),
            rollout={kind: self.rollout_steps(kind) for kind in self.model.structure.token_kinds},
            channels=strongest_channels(features[-1][0], channels) if features else [],
        )


@dataclass(frozen=True)
class _Forward:
    """Another traced forward of a session's image (the what-if's), for the methods to read."""

    model: TokenFusionModel
    x: Tensor
    logits: Tensor
    trace: Trace


def _checked(region: Region) -> Region:
    left, top, right, bottom = (float(v) for v in region)
    if not (0 <= left <= right <= 1 and 0 <= top <= bottom <= 1):
        raise ExplainError(f"A region is (left, top, right, bottom) as fractions of the image, each in [0, 1] with "
                           f"left <= right and top <= bottom; got {tuple(region)}")
    return left, top, right, bottom


def explain(
    model: TokenFusionModel, x: Tensor, method: str, layer: str | None = None, target: int | None = None,
    **options: Any,
) -> Explanation:
    """Explain one normalised image ``x`` with ``method``: ``Explainer(model, x).explain(...)``.

    ``kind`` (an option) and ``layer`` pick one of the method's targets (see :class:`Explainer`).
    ``Explanation.seconds`` is the time of this whole call, its traced forward included.
    """
    start = time.perf_counter()
    kind = options.pop("kind", None)
    result = Explainer(model, x).explain(method, layer, target, kind=kind, **options)
    result.seconds = time.perf_counter() - start
    return result
