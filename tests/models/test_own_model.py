"""docs/own_model.md: a user's own fusion model, its structure declared, explained and analysed like ours."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from tokenfusion.analysis.data import AnalysisData
from tokenfusion.analysis.runner import analyze
from tokenfusion.interventions import intervene

DOC = Path(__file__).resolve().parents[2] / "docs" / "own_model.md"


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    """The namespace the doc's Python block leaves behind (its own asserts run with it)."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)[1]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    torch.manual_seed(0)
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102
    return namespace


def test_the_declared_model_traces_both_kinds_and_removes_them(example: dict[str, Any]) -> None:
    session, model = example["session"], example["model"]
    assert model.structure.is_fusion and model.structure.token_kinds == ("cnn", "patch")
    layout = session.trace.layouts["net.blocks.1"]
    assert (layout.grid("cnn"), layout.grid("patch"), layout.count("cls")) == ((8, 8), (8, 8), 1)
    with torch.no_grad():
        assert torch.allclose(session.logits, model.net(session.x), atol=1e-5)
    shares = session.fusion().cls_share
    assert shares["cnn"].shape == shares["patch"].shape == (1, 2, 4)  # (images, layers, heads)
    assert bool(((shares["cnn"] + shares["patch"]) <= 1 + 1e-5).all())
    removed = session.what_if("cnn", 1, mode="zero")
    assert removed.places == ["net.blocks.0", "net.blocks.1"] and len(removed.prediction.names) == 5


def test_an_intervention_on_the_declared_tokens_reaches_the_module(example: dict[str, Any]) -> None:
    """Zeroing the CNN tokens at their declared token module is zeroing what ``cnn_proj`` returns."""
    session, model = example["session"], example["model"]
    handle = model.net.cnn_proj.register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    with torch.no_grad():
        by_hand = model(session.x)
    handle.remove()
    with intervene(model, "cnn", "zero") as hooked, torch.no_grad():
        zeroed = model(session.x)
    assert hooked == 1 and torch.allclose(zeroed, by_hand, atol=1e-6)
    assert not torch.allclose(zeroed, session.logits, atol=1e-3)


def test_the_analysis_runs_over_the_declared_model(example: dict[str, Any]) -> None:
    classes = [str(i) for i in range(10)]
    data = AnalysisData(TensorDataset(torch.randn(4, 3, 64, 64), torch.arange(4)), classes, {"dataset": "random"})
    result = analyze({"own": example["model"]}, data, batch_size=4, device="cpu", progress=False, sensitivity_images=1)
    own = result["models"]["own"]
    assert own["token_kinds"] == ["cnn", "patch"]
    assert set(own["ablation"]) == {"cnn", "patch"} and "net.blocks" in own["attention_distance"]
