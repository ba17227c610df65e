"""What an explanation will cost before it runs: the forward passes a method needs (each method
counts its own, :meth:`~tokenfusion.explain.spec.Method.passes`), times the measured time of one
forward of the model.

ScoreCAM and AblationCAM run one masked image per channel of their layer (``scorecam_topk`` one
per scored channel), Occlusion one image per window position, Integrated Gradients and SmoothGrad
one forward and one backward per step or sample; the attention maps are read from the session's
traced forward and cost none. A backward is counted as two forwards.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..models import TokenFusionModel
from ._utils import device_of
from .registry import Resolved, resolve
from .spec import Passes, Request

__all__ = ["BATCH", "ForwardCost", "Passes", "Progress", "estimate_seconds", "faithfulness_seconds", "forward_passes",
           "measure_forward", "randomisation_seconds", "reporting"]

#: ``progress(done, total)``: images sent through the model's forward so far, of ``total``.
Progress = Callable[[int, int], None]

#: The batch the many-pass methods run at by default (``batch_size``, ``internal_batch_size``...).
BATCH = 16


@dataclass(frozen=True)
class ForwardCost:
    """Measured forwards of the model: ``seconds`` of one image alone, ``batched`` seconds per image
    in a batch of ``batch`` (as the many-pass methods run them; the median of the repeats each), and
    the channels of every CAM target module's output (``C`` of a feature map ``(B, C, h, w)``, ``D``
    of tokens ``(B, N, D)``), by module name."""

    seconds: float
    batched: float
    batch: int
    channels: dict[str, int]


def _median_seconds(model: TokenFusionModel, x: torch.Tensor, repeats: int) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)  # a GPU returns before it has finished
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        model(x)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def _channels(model: TokenFusionModel, x: torch.Tensor, layers: Iterable[str]) -> dict[str, int]:
    """The channels of each module in ``layers`` (``C`` of ``(B, C, h, w)``, ``D`` of ``(B, N, D)``),
    read in one forward of ``x``."""
    channels: dict[str, int] = {}

    def keep(name: str):
        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            channels[name] = int(out.shape[1] if out.dim() == 4 else out.shape[-1])
        return hook

    handles = [model.get_submodule(layer).register_forward_hook(keep(layer)) for layer in dict.fromkeys(layers)]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return channels


@torch.no_grad()
def measure_forward(model: TokenFusionModel, repeats: int = 3, budget: float = 0.5) -> ForwardCost:
    """Time ``repeats`` forwards of one mean-colour image at the model's input size (after one
    warm-up), then of a batch as large as :data:`BATCH` or as fits one forward in ``budget`` seconds,
    and read the channels of every CAM target module."""
    model.eval()
    size = model.config.img_size
    x = torch.zeros(1, 3, size, size, device=device_of(model))
    channels = _channels(model, x, (t.layer for t in model.structure.cam_targets))  # and the warm-up
    seconds = _median_seconds(model, x, repeats)
    batch = max(1, min(BATCH, int(budget / max(seconds, 1e-6))))
    batched = seconds if batch == 1 else _median_seconds(model, x.expand(batch, -1, -1, -1), repeats) / batch
    return ForwardCost(seconds, batched, batch, channels)


def forward_passes(model: TokenFusionModel, cost: ForwardCost, request: Request) -> Passes:
    """The passes ``request`` needs on one image of ``model`` (the same value
    :meth:`Explainer.answer <tokenfusion.explain.Explainer.answer>` serves), beyond the session's
    traced forward (the method's own count, :meth:`~tokenfusion.explain.spec.Method.passes`). Raises
    :class:`~tokenfusion.explain.ExplainError` for a request the model does not allow."""
    return _passes(model, cost.channels, request)


def _passes(model: TokenFusionModel, channels: Mapping[str, int], request: Request) -> Passes:
    """:func:`forward_passes` of ``request`` with the ``channels`` of the CAM target modules, by name."""
    found = resolve(model, request)
    return found.method.passes(model, channels, found.layer, found.kind, found.options)


@contextmanager
def reporting(model: TokenFusionModel, x: torch.Tensor, progress: Progress, found: Resolved) -> Iterator[Passes]:
    """Inside the block, ``progress(done, total)`` after every forward of ``model`` (every batch of
    the many-pass methods): ``done`` images sent through it so far, at most ``total``, the forwards
    :func:`forward_passes` counts for the resolved request ``found`` on the image ``x`` ``(1, 3, H, W)``;
    once with ``done = 0`` on entry. The methods that run one image per channel first read their
    layer's channels in one forward of ``x``. An exception raised by ``progress`` ends the work there."""
    channels = _channels(model, x, [found.layer]) if found.method.per_channel else {}
    passes = found.method.passes(model, channels, found.layer, found.kind, found.options)
    done = 0

    def count(_module: torch.nn.Module, args: tuple, _output: Any) -> None:
        nonlocal done
        done = min(passes.forwards, done + args[0].shape[0])
        progress(done, passes.forwards)

    progress(0, passes.forwards)
    handle = model.register_forward_hook(count)
    try:
        yield passes
    finally:
        handle.remove()


def estimate_seconds(model: TokenFusionModel, cost: ForwardCost, request: Request) -> float:
    """Estimated wall-clock seconds of ``request`` on one image: its forward-pass equivalents times
    the measured forward (per image in a batch, for the methods that batch)."""
    passes = forward_passes(model, cost, request)
    return passes.equivalent * (cost.batched if passes.batched else cost.seconds)


def faithfulness_seconds(model: TokenFusionModel, cost: ForwardCost, request: Request, *, steps: int = 20) -> float:
    """Estimated seconds of :meth:`Explainer.faithfulness` of the map ``request`` asks for: the map,
    then ``steps + 1`` images each for the deletion and the insertion curve, in batches."""
    return estimate_seconds(model, cost, request) + 2 * (steps + 1) * cost.batched


def randomisation_seconds(model: TokenFusionModel, cost: ForwardCost, request: Request, *, steps: int) -> float:
    """Estimated seconds of :meth:`Explainer.randomisation` of the map ``request`` asks for with
    ``steps`` randomised copies: each copy runs its own traced forward and the map again."""
    return (steps + 1) * (estimate_seconds(model, cost, request) + cost.seconds)
