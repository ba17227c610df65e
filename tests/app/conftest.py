"""Fixtures for the app tests: a checkpoint folder, and AppTest runs of the real app on it.

The shipped ``checkpoints/`` folder is used when it holds the five models (as in CI); otherwise
five tiny random-weight checkpoints are written to a temporary folder, so the tests never wait
for training.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tokenfusion.analysis.cache import CACHE_ENV
from tokenfusion.checkpoint import save_checkpoint
from tokenfusion.data import CLASS_NAMES
from tokenfusion.models import ARCHITECTURES, create

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "app" / "main.py"
SHIPPED = REPO / "checkpoints"
TIMEOUT = 90  # seconds per script run; the first run imports torch, captum and grad-cam


@pytest.fixture(scope="session", autouse=True)
def analysis_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Analysis page files its results in a temporary folder, not the user's cache (the
    browser test's server inherits it)."""
    folder = tmp_path_factory.mktemp("analysis_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


def write_checkpoints(folder: Path) -> Path:
    """Five tiny random-weight checkpoints with a short made-up history, as ``train.teach`` writes them."""
    for i, arch in enumerate(ARCHITECTURES):
        torch.manual_seed(i)
        history = [dict(epoch=e, train_loss=2.5 - 0.3 * e, val_loss=2.4 - 0.2 * e, top1=10.0 * e, top5=40.0 + 5 * e,
                        lr=1e-3 / e, images_per_s=100.0) for e in (1, 2, 3)]
        save_checkpoint(
            folder / f"{arch}.pt", create(arch, "tiny"), class_names=list(CLASS_NAMES),
            training=dict(dataset="synthshapes", epochs=3, top1=30.0, best_top1=30.0, history=history,
                          heldout=dict(seed=12345, samples=100, top1=25.0), train_seconds=12.0),
            provenance=dict(command="tests/app/conftest.py", seed=i),
        )
    return folder


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped checkpoints when all five are there, else freshly written tiny ones."""
    if all((SHIPPED / f"{arch}.pt").is_file() for arch in ARCHITECTURES):
        return SHIPPED
    return write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="session")
def teaching_models(checkpoint_dir: Path) -> list[str]:
    """The checkpoints the app lists from ``checkpoint_dir``, by name: Compare and Analysis run them all
    (the shipped folder holds the five strategies and the ``early-greedy`` control)."""
    from app.sources import list_checkpoints

    return list(list_checkpoints(checkpoint_dir))


@pytest.fixture
def app(checkpoint_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """``app(folder=None, query=None)``: the app, run once, on ``checkpoint_dir`` (or ``folder``),
    opened with the URL query ``query`` (``{"model": "late"}``)."""

    def start(folder: Path | None = None, query: dict[str, str | list[str]] | None = None) -> AppTest:
        monkeypatch.setenv("TOKENFUSION_CHECKPOINTS", str(folder or checkpoint_dir))
        at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
        for name, value in (query or {}).items():
            at.query_params[name] = value
        return at.run()

    return start
