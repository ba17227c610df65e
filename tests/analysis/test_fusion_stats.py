"""Fusion weights over a set: batch-by-batch sums give the statistics of the whole set."""
from __future__ import annotations

import pytest
import torch

from tokenfusion.analysis import FusionStats, Moments
from tokenfusion.explain import fusion_weights
from tokenfusion.models import create


def test_moments_of_batches_equal_those_of_the_whole() -> None:
    samples = torch.randn(50, 3, 2)
    moments = Moments()
    for chunk in samples.split([7, 30, 13]):
        moments.update(chunk)
    assert torch.allclose(moments.mean, samples.double().mean(0))
    assert torch.allclose(moments.std, samples.double().std(0))


def test_fusion_stats_over_batches_equal_fusion_weights_of_the_whole_set() -> None:
    model = create("early", "tiny").eval()
    x, labels = torch.randn(10, 3, 48, 48), torch.tensor([0, 1, 1, 2, 0, 1, 2, 2, 2, 0])
    stats = FusionStats(3)
    with torch.no_grad():
        for xs, ys in zip(x.split(4), labels.split(4)):
            stats.update(model(xs, trace=True)[1], ys)
    whole = fusion_weights(model, x)
    result = stats.result()
    assert result["layers"] == [f"blocks.{i}" for i in range(4)]
    for kind in ("cnn", "patch"):
        assert torch.allclose(torch.tensor(result[kind]["cls_share_mean"], dtype=torch.float64), whole.cls_share[kind].double().mean(0), atol=1e-6)
        assert torch.allclose(torch.tensor(result[kind]["cls_share_std"], dtype=torch.float64), whole.cls_share[kind].double().std(0), atol=1e-5)
        per_class = torch.tensor(result[kind]["cls_share_per_class"], dtype=torch.float64)
        assert torch.allclose(per_class[2], whole.cls_share[kind][labels == 2].double().mean(0), atol=1e-6)
        assert torch.tensor(result[kind]["cls_share_histogram"]).sum(-1).eq(10).all()
    shares = torch.tensor(result["cnn"]["cls_share_mean"]) + torch.tensor(result["patch"]["cls_share_mean"])
    assert (shares <= 1 + 1e-6).all()  # the class token's own share is the rest


def test_layerwise_reports_gates_and_update_ratios() -> None:
    model = create("layerwise", "tiny").eval()
    stats = FusionStats(2)
    with torch.no_grad():
        stats.update(model(torch.randn(4, 3, 48, 48), trace=True)[1], torch.tensor([0, 1, 0, 1]))
    cross = stats.result()["cross"]
    assert cross["layers"] == [f"cross_blocks.{i}" for i in range(4)]
    assert cross["gates"] == pytest.approx([0.0] * 4)  # an untrained model starts as a ViT
