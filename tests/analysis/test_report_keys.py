"""What :func:`analyze` writes for attention distance and CKA, read back by the summary and the figures,
with random-weight models (no checkpoint): per-layer uniform references beside the per-stream ones older
readers take, and which representation each CKA pair compared."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from tokenfusion.analysis import AnalysisData, analyze
from tokenfusion.analysis.summary import summary_markdown, uniform_references
from tokenfusion.models import create
from tokenfusion.viz.analysis import attention_distance_figure, cka_figure, uniform_reference


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    models = {"early": create("early", "tiny"), "layerwise": create("layerwise", "tiny")}
    images = torch.randn(8, 3, 64, 64)
    data = AnalysisData(TensorDataset(images, torch.arange(8) % 12), [str(i) for i in range(12)],
                        {"dataset": "synthshapes", "seed": 0, "images": 8})
    return analyze(models, data, batch_size=4, device="cpu", measures=("attention_distance", "cka"), progress=False)


def test_every_layer_has_its_uniform_reference_and_every_stream_its_summary(report) -> None:
    layerwise = report["models"]["layerwise"]
    per_layer = layerwise["attention_distance_uniform_layers"]
    assert set(per_layer["cross_attention"]) == set(layerwise["attention_distance"]["cross_attention"])
    references = {layer: pairs["patch->cnn"] for layer, pairs in per_layer["cross_attention"].items()}
    assert references["cross_blocks.0"] != pytest.approx(references["cross_blocks.3"], abs=1e-3)
    old = layerwise["attention_distance_uniform"]
    assert set(old) == {"blocks", "cross_attention"} and set(old["cross_attention"]) == {"patch->cnn"}
    assert uniform_reference(layerwise) is per_layer


def test_cka_records_what_each_pair_compared(report) -> None:
    cka = report["cka"]
    names, grids, on = cka["names"], cka["grids"], cka["representation"]
    stage1, patches = names.index("early/trunk.stage1"), names.index("layerwise/blocks.3:patch")
    assert grids[stage1] == [16, 16] and grids[patches] == [8, 8] and on[stage1][patches] == "mean"
    assert on[names.index("early/blocks.3:patch")][patches] == "tokens"
    assert on[names.index("early/blocks.0:cnn")][names.index("early/trunk.stage2")] == "tokens"
    for comparison in cka["comparisons"]:
        rows, cols = [names.index(r) for r in comparison["rows"]], [names.index(c) for c in comparison["cols"]]
        assert comparison["representation"] == [[on[i][j] for j in cols] for i in rows]
        cka_figure(comparison)


def test_summary_and_figures_read_the_new_keys_and_the_old_ones(report) -> None:
    summary = summary_markdown(report)
    assert "token by token where the two layers' grids match" in summary
    assert "| `layerwise` | cross_attention | patch->cnn |" in summary
    layerwise = report["models"]["layerwise"]
    first, last = (layerwise["attention_distance_uniform_layers"]["cross_attention"][f"cross_blocks.{i}"]["patch->cnn"]
                   for i in (0, 3))
    assert f"| {first:.1f} (first), {last:.1f} (last) |" in summary
    figure = attention_distance_figure(layerwise["attention_distance"], uniform_reference(layerwise))
    dotted = [t for t in figure.data if t.mode == "lines" and "patch->cnn" in t.hovertemplate]
    assert list(dotted[0].y) == pytest.approx([layerwise["attention_distance_uniform_layers"]["cross_attention"][layer]
                                               ["patch->cnn"] for layer in dotted[0].x])
    # a file written before per-layer references: one reference per stream for every layer
    old = {key: value for key, value in layerwise.items() if key != "attention_distance_uniform_layers"}
    per_stream = old["attention_distance_uniform"]["cross_attention"]["patch->cnn"]
    assert {pairs["patch->cnn"] for pairs in uniform_references(old)["cross_attention"].values()} == {per_stream}
    attention_distance_figure(old["attention_distance"], uniform_reference(old))
    def without(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if k != "representation"}

    older = dict(report, models={"layerwise": old}, cka=without(report["cka"]))
    older["cka"]["comparisons"] = [without(c) for c in report["cka"]["comparisons"]]
    assert "on the mean of each kind's tokens per layer" in summary_markdown(older)
