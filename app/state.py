"""Cached loaders and computations, shared by every page and every session.

A model is loaded once per checkpoint file (``st.cache_resource``) together with a lock; all
computations on it run under that lock, because the model object is shared by every session
and CAMs and ablations attach hooks to it. Results are cached (``st.cache_data``) by checkpoint,
image, task and parameters, and come back with the seconds they took. The prediction, attention
maps and fusion weights of one image are read from one shared traced forward.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

import streamlit as st
import torch
from torch import Tensor

from tokenfusion.checkpoint import Checkpoint, load_checkpoint
from tokenfusion.data.transforms import preprocess
from tokenfusion.explain import (
    CAM_METHODS, MethodInfo, attention_map, attention_rollout, available_methods, branch_ablation, cam,
    cross_attention_map, deletion_curve, explain, insertion_curve, randomisation_check,
)
from tokenfusion.models import ARCHITECTURES, ModelConfig, TokenFusionModel, Trace, count_flops, count_parameters
from tokenfusion.viz import anatomy, rollout_steps, sequence_table, top_k
from tokenfusion.viz.anatomy import strongest_channels

from .sources import ImageChoice, uploaded_image

__all__ = [
    "DEVICE", "LoadedModel", "Timed", "compute", "exclusive", "load_model", "methods", "model_input", "uploaded",
]

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
T = TypeVar("T")


@dataclass
class LoadedModel:
    """A checkpoint loaded on :data:`DEVICE`; ``key`` names it in caches (path, size, mtime)."""

    key: str
    name: str
    checkpoint: Checkpoint
    lock: threading.Lock

    @property
    def model(self) -> TokenFusionModel:
        return self.checkpoint.model

    @property
    def config(self) -> ModelConfig:
        return self.checkpoint.config

    @property
    def class_names(self) -> list[str]:
        return self.checkpoint.class_names


@dataclass(frozen=True)
class Timed(Generic[T]):
    """A computed ``value`` and the wall-clock ``seconds`` it took when it was computed."""

    value: T
    seconds: float


@st.cache_resource(max_entries=16, show_spinner=False)
def _load(path: str, stamp: tuple[int, int], name: str, arch: str | None) -> LoadedModel:
    checkpoint = load_checkpoint(path, map_location=DEVICE, arch=arch)
    checkpoint.model.to(DEVICE).eval()
    return LoadedModel(f"{path}:{stamp[0]}:{stamp[1]}", name, checkpoint, threading.Lock())


def load_model(path: Path, name: str) -> LoadedModel:
    """The model of the checkpoint at ``path``, loaded once per file version; raises
    :class:`tokenfusion.checkpoint.CheckpointError` (never cached) for a file that cannot be used.

    A file named after an architecture (``late.pt``) must hold that architecture, so that a
    renamed checkpoint is reported rather than shown under the wrong name."""
    info = path.stat() if path.is_file() else None
    stamp = (info.st_size, info.st_mtime_ns) if info else (0, 0)
    arch = path.stem if path.stem in ARCHITECTURES else None
    return _load(str(path.resolve()), stamp, name, arch)


@contextmanager
def exclusive(loaded: LoadedModel) -> Iterator[TokenFusionModel]:
    """The shared model, for this thread only; afterwards back in eval mode with no gradients."""
    with loaded.lock:
        try:
            yield loaded.model
        finally:
            loaded.model.eval()
            loaded.model.zero_grad(set_to_none=True)


def model_input(loaded: LoadedModel, choice: ImageChoice) -> Tensor:
    """The normalised ``(1, 3, H, W)`` input of ``loaded``'s model for the chosen image."""
    return preprocess(choice.image, loaded.config)


@st.cache_data(max_entries=16, show_spinner=False)
def uploaded(name: str, data: bytes) -> ImageChoice:
    """An uploaded image decoded once per content; a :class:`~tokenfusion.data.images.ImageError`
    is raised again on every call (errors are never cached)."""
    return uploaded_image(name, data)


@st.cache_data(max_entries=32, show_spinner=False)
def _methods(model_key: str, _loaded: LoadedModel) -> list[MethodInfo]:
    with exclusive(_loaded) as model:
        return available_methods(model)


def methods(loaded: LoadedModel) -> dict[str, MethodInfo]:
    """Every explanation method that applies to the model, by name, with its layers and token kinds."""
    return {m.name: m for m in _methods(loaded.key, loaded)}


@dataclass
class _Job:
    """What a task works on: the model (held under its lock), the input, the class names, and one
    traced forward of that input shared by every task that reads attention (see :func:`_trace`)."""

    loaded: LoadedModel
    choice: ImageChoice | None

    @property
    def model(self) -> TokenFusionModel:
        return self.loaded.model

    @cached_property
    def x(self) -> Tensor:
        return model_input(self.loaded, self.choice)

    def traced(self) -> tuple[Tensor, Trace]:
        return _trace(self.loaded.key, self.choice.key, self.loaded, self.choice)


@st.cache_resource(max_entries=4, show_spinner=False)
def _trace(model_key: str, image_key: str, _loaded: LoadedModel, _choice: ImageChoice) -> tuple[Tensor, Trace]:
    """``(logits, trace)`` of one traced forward, kept (not copied) for the prediction, the attention
    maps and the fusion weights of one image; only called by tasks, which hold the model's lock."""
    with torch.no_grad():
        return _loaded.model(model_input(_loaded, _choice).to(DEVICE), trace=True)


_FROM_TRACE = {"attention": attention_map, "rollout": attention_rollout, "cross_attention": cross_attention_map}


def _explain(job: _Job, *, method: str, layer: str | None = None, kind: str | None = None, **options: Any) -> Any:
    if method in CAM_METHODS:  # the CAM reads layouts and the predicted class from the shared trace
        logits, trace = job.traced()
        return cam(job.model, job.x, method, layer, None, kind, trace=trace, logits=logits, **options)
    if method not in _FROM_TRACE:
        return explain(job.model, job.x, method, layer, kind=kind, **options)
    logits, trace = job.traced()
    where = {"layer": layer} if method != "rollout" else {}
    if method != "cross_attention":
        where["kind"] = kind or "patch"
    return _FROM_TRACE[method](job.model, job.x, **where, **options, trace=trace, logits=logits)


def _curves(job: _Job, *, method: str, layer: str | None, kind: str | None, baseline: str, steps: int) -> Any:
    saliency = _explain(job, method=method, layer=layer, kind=kind)
    options = dict(steps=steps, baseline=baseline)
    return (saliency, deletion_curve(job.model, job.x, saliency.map, saliency.target, **options),
            insertion_curve(job.model, job.x, saliency.map, saliency.target, **options))


def _randomisation(job: _Job, *, method: str, layer: str | None, kind: str | None, steps: int) -> Any:
    reference = _explain(job, method=method, layer=layer, kind=kind)

    def again(model: torch.nn.Module, image: Tensor) -> Any:
        return explain(model, image, method, reference.layer, reference.target, kind=reference.kind)

    return randomisation_check(job.model, job.x, again, steps=steps, reference=reference)


def _anatomy(job: _Job, *, channels: int) -> Any:
    _, trace = job.traced()
    return {
        "anatomy": anatomy(job.model, trace),
        "sequences": sequence_table(trace),
        "rollout": {kind: rollout_steps(trace, kind) for kind in ("cnn", "patch")},
        "channels": strongest_channels(trace.cnn_features[-1][0], channels) if trace.cnn_features else [],
    }


_TASKS: dict[str, Callable[..., Any]] = {
    "predict": lambda job, k: top_k(job.traced()[0], job.loaded.class_names, k),
    "explain": _explain,
    "fusion": lambda job: job.traced()[1].fusion,
    "ablation": lambda job: branch_ablation(job.model, job.x),
    "curves": _curves,
    "randomisation": _randomisation,
    "anatomy": _anatomy,
    "size": lambda job: {"parameters": count_parameters(job.model), "flops": count_flops(job.model)},
}


@st.cache_data(max_entries=2048, show_spinner=False)
def _compute(task: str, model_key: str, image_key: str, params: tuple[tuple[str, Any], ...],
             _loaded: LoadedModel, _choice: ImageChoice | None) -> Timed[Any]:
    start = time.perf_counter()
    with exclusive(_loaded):
        value = _TASKS[task](_Job(_loaded, _choice), **dict(params))
    return Timed(value, time.perf_counter() - start)


def compute(task: str, loaded: LoadedModel, choice: ImageChoice | None = None, **params: Any) -> Timed[Any]:
    """Run ``task`` (``predict, explain, fusion, ablation, curves, randomisation, anatomy, size``)
    for ``loaded``'s model on the chosen image, or fetch it from the cache."""
    key = choice.key if choice is not None else ""
    return _compute(task, loaded.key, key, tuple(sorted(params.items())), loaded, choice)
