"""Mean attention distance: zero for attention to oneself, the closed form for uniform attention."""
from __future__ import annotations

import math

import pytest
import torch

from tokenfusion.analysis import AttentionDistance, mean_attention_distance, token_centres
from tokenfusion.models import TokenLayout, Trace


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
