"""The figure builders the app draws with (``tokenfusion.viz``): what they show is what was computed."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from tokenfusion.data.transforms import model_view, preprocess
from tokenfusion.explain import Explainer, agreement_matrices, explain, predict
from tokenfusion.explain.agreement import top_fraction_iou
from tokenfusion.explain.anatomy import anatomy
from tokenfusion.models import ARCHITECTURES, create, make_config
from tokenfusion.viz import overlay_figure, overlays_figure, strategy_diagram, token_grid_figure, topk_figure


@pytest.mark.parametrize(("size", "crop_pct"), [((300, 200), 0.875), ((90, 160), 1.0), ((48, 48), 1.0)])
def test_model_view_shows_the_crop_the_model_sees(size: tuple[int, int], crop_pct: float) -> None:
    """The displayed square, brought to the model's resolution, matches the de-normalised input."""
    config = make_config("vit", "tiny", img_size=48, crop_pct=crop_pct)
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 255, (6, 9, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    x = preprocess(smooth, config)[0]
    seen = x * torch.tensor(config.std)[:, None, None] + torch.tensor(config.mean)[:, None, None]
    shown = torch.from_numpy(np.array(model_view(smooth, config, 240).resize((48, 48), Image.Resampling.BOX)))
    error = (seen.permute(1, 2, 0) * 255 - shown.float()).abs().mean()
    assert error < 6  # a few grey levels of resampling difference, not a shifted crop


def test_top_fraction_iou() -> None:
    a = torch.arange(100.0).reshape(10, 10)
    assert top_fraction_iou(a, a) == 1.0
    assert top_fraction_iou(a, -a) == 0.0
    assert top_fraction_iou(a, a.flip(0).flip(1), fraction=1.0) == 1.0


def test_agreement_matrices_are_symmetric_and_resize_to_a_common_size() -> None:
    base = torch.rand(48, 48)
    maps = {"a": base, "b": base.clone(), "c": torch.rand(96, 96)}
    m = agreement_matrices(maps)
    for matrix in m.values():
        assert matrix.shape == (3, 3) and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1)
    assert m["spearman"][0, 1] == pytest.approx(1.0) and m["iou"][0, 1] == pytest.approx(1.0)


def test_overlay_stretches_a_token_grid_over_the_image() -> None:
    fig = overlay_figure(np.zeros((240, 240, 3), dtype=np.uint8), torch.rand(6, 6), title="t")
    heat = fig.data[1]
    assert heat.dx == 40 and heat.x0 + 5 * heat.dx + heat.dx / 2 == pytest.approx(239.5)
    lines = token_grid_figure(np.zeros((240, 240, 3), dtype=np.uint8), (6, 4), colour="red").layout.shapes
    assert len(lines) == (4 + 1) + (6 + 1)


def test_overlays_carry_the_picture_itself_as_a_lossless_image() -> None:
    picture = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    for fig in (overlay_figure(picture, torch.rand(5, 5)), overlays_figure(picture, [("a", torch.rand(5, 5))] * 3)):
        images = [t for t in fig.data if t.type == "image"]
        assert images and all(t.source == images[0].source for t in images)
        shown = Image.open(io.BytesIO(base64.b64decode(images[0].source.split(",", 1)[1])))
        assert np.array_equal(np.asarray(shown.convert("RGB")), picture)


def test_topk_marks_the_true_class() -> None:
    model = create("cnn", "tiny").eval()
    names = [f"c{i}" for i in range(12)]
    prediction = predict(model, torch.randn(1, 3, 48, 48), names, k=5)
    assert len(prediction.names) == 5 and prediction.probabilities == sorted(prediction.probabilities, reverse=True)
    colours = topk_figure(prediction, true_class=prediction.names[2]).data[0].marker.color
    assert colours[2] != colours[0]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_diagrams_carry_the_live_numbers(arch: str) -> None:
    model = create(arch, "tiny").eval()
    with torch.no_grad():
        _, trace = model(torch.randn(1, 3, 48, 48), trace=True)
    facts = anatomy(model, trace)
    live, symbolic = strategy_diagram(arch, facts), strategy_diagram(arch)
    assert live.startswith("digraph {") and live.rstrip().endswith("}")
    if arch != "cnn":
        assert "6×6 = 36" in live and "6×6 = 36" not in symbolic
    if arch == "layerwise":
        assert "gate tanh(g) = +0.000" in live  # gates start at 0


def test_rollout_steps_end_where_the_explained_rollout_does() -> None:
    model = create("vit", "tiny").eval()
    x = torch.randn(1, 3, 48, 48)
    steps = Explainer(model, x).rollout_steps("patch")
    assert [name for name, _ in steps] == ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]
    torch.testing.assert_close(steps[-1][1], explain(model, x, "rollout", kind="patch").grid)


def test_fusion_charts_stay_readable_at_twelve_layers_and_say_why_fresh_gates_are_empty() -> None:
    from tokenfusion.viz import attention_share_figure, gates_figure, head_share_figure

    torch.manual_seed(0)
    deep = create("early", "tiny", depth=12).eval()
    weights = Explainer(deep, torch.randn(1, 3, 48, 48)).fusion()
    axis = attention_share_figure(weights).layout.xaxis
    assert len(weights.layers) == 12 and len(axis.tickvals) <= 8 and axis.tickangle
    assert axis.tickvals[-1] == weights.layers[-1]  # the last layer is always named
    assert "per head" in head_share_figure(weights).layout.title.text
    fresh = create("layerwise", "tiny").eval()  # gates g = 0 at initialisation
    gates = Explainer(fresh, torch.randn(1, 3, 48, 48)).fusion()
    notes = [a.text for a in gates_figure(gates, [f"layer {i}" for i in range(len(gates.gates))]).layout.annotations]
    assert any("Every gate is 0" in n for n in notes)
