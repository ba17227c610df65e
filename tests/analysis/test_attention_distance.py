"""Mean attention distance: zero for attention to oneself, the closed form for uniform attention, token
positions at receptive-field centres, one uniform reference per query grid and key grid."""
from __future__ import annotations

import math

import pytest
import torch

from tokenfusion.analysis import AttentionDistance, mean_attention_distance, token_centres
from tokenfusion.models import CrossAttentionTrace, TokenLayout, Trace, create
from tokenfusion.models.geometry import TokenGeometry


def test_identity_attention_has_distance_zero() -> None:
    layout = TokenLayout.build(("cls", 1), ("cnn", (3, 3)), ("patch", (3, 4)))
    n = layout.num_tokens
    weights = torch.eye(n).expand(2, 4, n, n)
    out = mean_attention_distance(weights, layout, layout, (24, 32))
    assert out["cnn->cnn"].shape == (2, 4)
    assert torch.allclose(out["cnn->cnn"], torch.zeros(2, 4, dtype=torch.float64))
    assert torch.allclose(out["patch->patch"], torch.zeros(2, 4, dtype=torch.float64))


def test_uniform_attention_matches_its_closed_form() -> None:
    # a 2x2 grid on a 16x16 image: cells of 8 px, centres 8 px apart; from each centre the distances
    # to the four centres are 0, 8, 8 and 8*sqrt(2)
    layout = TokenLayout.build(("cls", 1), ("cnn", (1, 1)), ("patch", (2, 2)))
    n = layout.num_tokens
    weights = torch.full((1, 3, n, n), 1 / n)
    out = mean_attention_distance(weights, layout, layout, (16, 16))
    assert torch.allclose(out["patch->patch"], torch.full((1, 3), (16 + 8 * math.sqrt(2)) / 4, dtype=torch.float64))
    # the one CNN token sits at the image centre, 4*sqrt(2) from every patch centre
    assert torch.allclose(out["cnn->patch"], torch.full((1, 3), 4 * math.sqrt(2), dtype=torch.float64))
    assert torch.allclose(out["patch->cnn"], torch.full((1, 3), 4 * math.sqrt(2), dtype=torch.float64))
    assert torch.allclose(out["cnn->cnn"], torch.zeros(1, 3, dtype=torch.float64))
    trace = Trace()
    trace.record("blocks", "blocks.0", layout, weights, torch.zeros(1, n, 4))
    accumulator = AttentionDistance()
    accumulator.update(trace, (16, 16))
    reference = accumulator.uniform()["blocks"]
    for pair, value in accumulator.result()["blocks"]["blocks.0"].items():
        assert value == pytest.approx([reference[pair]] * 3)


def test_token_centres_spread_the_grid_over_the_image() -> None:
    layout = TokenLayout.build(("patch", (2, 3)))
    centres = token_centres(layout, "patch", (20, 30))
    assert centres.tolist() == [[5, 5], [5, 15], [5, 25], [15, 5], [15, 15], [15, 25]]


def test_accumulated_distance_is_the_mean_over_images_whatever_the_batches() -> None:
    layout = TokenLayout.build(("cls", 1), ("patch", (3, 3)))
    weights = torch.softmax(torch.randn(6, 2, 10, 10) * 3, dim=-1)
    one, split = AttentionDistance(), AttentionDistance()
    for accumulator, chunks in ((one, [weights]), (split, weights.split([1, 5]))):
        for chunk in chunks:
            trace = Trace()
            trace.record("blocks", "blocks.0", layout, chunk, torch.zeros(len(chunk), 10, 4))
            accumulator.update(trace, (24, 24))
    expected = mean_attention_distance(weights, layout, layout, (24, 24))["patch->patch"].mean(0)
    assert split.result()["blocks"]["blocks.0"]["patch->patch"] == pytest.approx(expected.tolist())
    assert one.result()["blocks"]["blocks.0"]["patch->patch"] == pytest.approx(expected.tolist())


def test_token_centres_read_the_tokens_geometry() -> None:
    layout = TokenLayout.build(("cls", 1), ("cnn", (2, 2)))
    geometry = TokenGeometry("cnn_tokens", "cnn", (2.5, 2.5), (8.0, 8.0), (19, 19))
    assert token_centres(layout, "cnn", (16, 16), geometry).tolist() == [[2.5, 2.5], [2.5, 10.5], [10.5, 2.5],
                                                                         [10.5, 10.5]]


def _brute_force_mean_distance(queries: list[tuple[float, float]], keys: list[tuple[float, float]]) -> float:
    total = 0.0
    for qy, qx in queries:
        for ky, kx in keys:
            total += math.hypot(qy - ky, qx - kx)
    return total / (len(queries) * len(keys))


def _cells(h: int, w: int, offset: float, stride: float) -> list[tuple[float, float]]:
    return [(offset + stride * i, offset + stride * j) for i in range(h) for j in range(w)]


@pytest.fixture(scope="module")
def layerwise():
    torch.manual_seed(0)
    model = create("layerwise", "tiny").eval()
    with torch.no_grad():
        _, trace = model(torch.randn(3, 3, 64, 64), trace=True)
    accumulator = AttentionDistance(model)
    accumulator.update(trace, (64, 64))
    return model, trace, accumulator


def test_each_cross_attention_layer_has_the_reference_of_the_key_grid_it_reads(layerwise) -> None:
    model, trace, accumulator = layerwise
    reference = accumulator.uniform_layers()["cross_attention"]
    # patch queries: the centres of 8-px patches on an 8x8 grid; CNN keys: the receptive-field centres of
    # stage 1 (16x16 every 4 px from 0.5) in the first half, of stage 2 (8x8 every 8 px from 2.5) later
    patches = _cells(8, 8, 4.0, 8.0)
    keys = {"trunk.stage1": _cells(16, 16, 0.5, 4.0), "trunk.stage2": _cells(8, 8, 2.5, 8.0)}
    entries = model.structure.cross_entries
    assert {e.stage for e in entries} == set(keys) and set(reference) == {e.layer for e in entries}
    brute_force = {stage: _brute_force_mean_distance(patches, positions) for stage, positions in keys.items()}
    assert abs(brute_force["trunk.stage1"] - brute_force["trunk.stage2"]) > 0.05  # one per stream cannot fit both
    for entry in entries:
        assert trace.cross_attention[entry.layer].key_layout.count("cnn") == len(keys[entry.stage])
        assert reference[entry.layer]["patch->cnn"] == pytest.approx(brute_force[entry.stage], abs=1e-9)
    assert accumulator.uniform_layers()["blocks"]["blocks.0"]["patch->patch"] == pytest.approx(
        _brute_force_mean_distance(patches, patches), abs=1e-9)
    # the per-stream summary kept for older readers: the mean over the layers
    per_layer = [reference[e.layer]["patch->cnn"] for e in entries]
    assert accumulator.uniform()["cross_attention"]["patch->cnn"] == pytest.approx(sum(per_layer) / len(per_layer))


def test_uniform_cross_attention_measures_its_layers_reference(layerwise) -> None:
    model, trace, _ = layerwise
    uniform = Trace()
    for layer, cross in trace.cross_attention.items():
        weights = torch.full_like(cross.weights, 1 / cross.weights.shape[-1])
        uniform.cross_attention[layer] = CrossAttentionTrace(weights, cross.query_layout, cross.key_layout,
                                                             cross.gate, cross.update_ratio)
    accumulator = AttentionDistance(model)
    accumulator.update(uniform, (64, 64))
    reference = accumulator.uniform_layers()["cross_attention"]
    for layer, pairs in accumulator.result()["cross_attention"].items():
        assert pairs["patch->cnn"] == pytest.approx([reference[layer]["patch->cnn"]] * 4)


def test_cnn_tokens_sit_at_their_receptive_field_centres() -> None:
    model = create("early", "tiny").eval()
    layout = TokenLayout.build(("cls", 1), ("cnn", (8, 8)), ("patch", (8, 8)))
    n = layout.num_tokens
    # every CNN token attends to the patch of its own cell: its receptive field is centred 1.5 px up and
    # left of the patch centre (8i + 2.5 against 8i + 4), so it reaches 1.5 * sqrt(2) px
    weights = torch.zeros(1, 1, n, n)
    weights[0, 0, 1:65, 65:] = torch.eye(64)
    weights[0, 0, 0, 0] = weights[0, 0, 65:, 0] = 1
    trace = Trace()
    trace.record("blocks", "blocks.0", layout, weights, torch.zeros(1, n, 4))
    accumulator = AttentionDistance(model)
    accumulator.update(trace, (64, 64))
    assert accumulator.result()["blocks"]["blocks.0"]["cnn->patch"] == pytest.approx([1.5 * math.sqrt(2)])
    reference = accumulator.uniform_layers()["blocks"]["blocks.0"]
    cnn, patches = _cells(8, 8, 2.5, 8.0), _cells(8, 8, 4.0, 8.0)
    assert reference["cnn->patch"] == pytest.approx(_brute_force_mean_distance(cnn, patches), abs=1e-9)
    # without a model the grids are spread over the image, as before: the CNN cells on the patches
    plain = AttentionDistance()
    plain.update(trace, (64, 64))
    assert plain.result()["blocks"]["blocks.0"]["cnn->patch"] == pytest.approx([0.0])
