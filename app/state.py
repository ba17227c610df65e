"""Cached loaders and one explanation session per model and image, shared by every page and session.

A model is loaded once per file with a lock (it is shared, and CAMs hook it: all work runs under the
lock). One :class:`~tokenfusion.explain.Explainer` per model and image holds the traced forward;
its answers are cached by model, image and request, with the seconds they took."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Generic, NamedTuple, ParamSpec, TypeVar

import streamlit as st
import torch

from tokenfusion.checkpoint import Checkpoint, load_checkpoint
from tokenfusion.data.transforms import preprocess
from tokenfusion.explain import Explainer, MethodInfo, Progress
from tokenfusion.models import ARCHITECTURES, ModelConfig, TokenFusionModel, count_flops, count_parameters

from . import timing
from .sources import ImageChoice, uploaded_image

__all__ = ["DEVICE", "LoadedModel", "Timed", "ask", "exclusive", "load_model", "methods", "size", "uploaded"]

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
T, P = TypeVar("T"), ParamSpec("P")


@dataclass
class LoadedModel:
    """A checkpoint loaded on :data:`DEVICE`; ``key`` names it in caches (path, size, mtime)."""

    key: str
    name: str
    checkpoint: Checkpoint
    lock: threading.Lock = field(default_factory=threading.Lock)
    model: TokenFusionModel = field(init=False)
    config: ModelConfig = field(init=False)
    class_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        ck = self.checkpoint
        self.model, self.config, self.class_names = ck.model, ck.config, ck.class_names


class Timed(NamedTuple, Generic[T]):
    """A computed ``value`` and the wall-clock ``seconds`` it took when it was computed."""

    value: T
    seconds: float


@st.cache_resource(max_entries=16, show_spinner=False)
def _load(path: str, stamp: tuple[int, int], name: str, arch: str | None) -> LoadedModel:
    checkpoint = load_checkpoint(path, map_location=DEVICE, arch=arch)
    checkpoint.model.to(DEVICE).eval()
    return LoadedModel(f"{path}:{stamp[0]}:{stamp[1]}", name, checkpoint)


def load_model(path: Path, name: str) -> LoadedModel:
    """The model of the checkpoint at ``path``, once per file version; a file named after an
    architecture (``late.pt``) must hold it. Raises ``CheckpointError`` (never cached)."""
    stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else (0, 0)
    with timing.phase("load"):
        return _load(str(path.resolve()), stamp, name, path.stem if path.stem in ARCHITECTURES else None)


@contextmanager
def exclusive(loaded: LoadedModel, *, wait: bool = True) -> Iterator[TokenFusionModel | None]:
    """The shared model, for this thread only; afterwards back in eval mode with no gradients. With
    ``wait=False``, None at once when another thread holds it."""
    if not loaded.lock.acquire(blocking=wait):
        yield None
        return
    try:
        yield loaded.model
    finally:
        loaded.model.eval().zero_grad(set_to_none=True)
        loaded.lock.release()


_BY_KEY = {LoadedModel: lambda loaded: loaded.key, ImageChoice: lambda choice: choice.key}  # cache keys


@st.cache_data(max_entries=16, show_spinner=False)
def uploaded(name: str, data: bytes) -> ImageChoice:  # decoded once per content; errors are never cached
    return uploaded_image(name, data)


@st.cache_resource(max_entries=8, show_spinner=False, hash_funcs=_BY_KEY)
def _session(loaded: LoadedModel, choice: ImageChoice) -> Explainer:  # called only under the model's lock
    return Explainer(loaded.model, preprocess(choice.image, loaded.config))


@st.cache_data(max_entries=2048, show_spinner=False, hash_funcs=_BY_KEY)
def _ask(question: str, loaded: LoadedModel, choice: ImageChoice, args: tuple, kwargs: tuple,
         _progress: Progress | None = None) -> Timed[Any]:  # _progress: no part of the cache key
    start = time.perf_counter()
    watch = {} if _progress is None else {"progress": _progress}
    with exclusive(loaded):
        answer = getattr(_session(loaded, choice), question)(*args, **dict(kwargs), **watch)
    return Timed(answer, time.perf_counter() - start)


def ask(loaded: LoadedModel, choice: ImageChoice, question: Callable[Concatenate[Explainer, P], T],
        *args: P.args, **kwargs: P.kwargs) -> Timed[T]:
    """``question(session, *args, **kwargs)`` for a method of the session (``Explainer.explain``...) of
    ``loaded``'s model and the chosen image, under the model's lock; cached by model, image and arguments.
    A ``progress`` keyword goes to the question (``Explainer.explain``) but not into the cache key; an
    answer that raises (stopped by its ``progress``) is not cached."""
    progress = kwargs.pop("progress", None)
    with timing.phase("compute"):
        return _ask(question.__name__, loaded, choice, args, tuple(sorted(kwargs.items())), progress)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def methods(loaded: LoadedModel, choice: ImageChoice) -> dict[str, MethodInfo]:
    """Every method that applies to the model, by name: the session's :attr:`Explainer.methods`
    (made under the model's lock when the image has no session yet; a page asks it after its first
    question of the image, so the session is there)."""
    with timing.phase("compute"), exclusive(loaded):
        return _session(loaded, choice).methods


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def size(loaded: LoadedModel) -> tuple[int, int]:
    """``(parameters, FLOPs of one forward)`` of the model."""
    with exclusive(loaded) as model:
        return count_parameters(model), count_flops(model)
