"""Fixtures for the explanation tests: tiny random-weight models, one image each."""
from __future__ import annotations


import pytest
import torch

from tokenfusion.models import TokenFusionModel, create

ARCHS = ("cnn", "vit", "early", "late", "layerwise")


_MODELS: dict[str, TokenFusionModel] = {}


def _tiny(arch: str) -> TokenFusionModel:
    """A tiny random-weight model (64 px), built once per session, in eval mode."""
    if arch not in _MODELS:
        torch.manual_seed(0)
        _MODELS[arch] = create(arch, "tiny").eval()
    return _MODELS[arch]


def _image(size: int = 64, seed: int = 0) -> torch.Tensor:
    """One normalised-looking image ``(1, 3, size, size)``."""
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _hook_count(model: torch.nn.Module) -> int:
    """Every forward, pre-forward and backward hook registered on any module of ``model``."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.fixture(scope="session")
def tiny():
    """``tiny(arch)``: a cached tiny random-weight model in eval mode."""
    return _tiny


@pytest.fixture(scope="session")
def image():
    """``image(size=64, seed=0)``: one image ``(1, 3, size, size)``."""
    return _image


@pytest.fixture
def x() -> torch.Tensor:
    """One 64 px image ``(1, 3, 64, 64)``."""
    return _image()


@pytest.fixture(scope="session")
def hook_count():
    """``hook_count(model)``: hooks of every kind registered on the modules of ``model``."""
    return _hook_count
