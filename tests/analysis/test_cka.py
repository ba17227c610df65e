"""Minibatch linear CKA with the unbiased HSIC: invariances, independence, agreement with full batch."""
from __future__ import annotations

import pytest
import torch

from tokenfusion.analysis import MinibatchCKA, cka


def test_cka_is_one_under_an_orthogonal_transform_and_isotropic_scaling() -> None:
    x = torch.randn(200, 16)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    assert cka(x, x @ q) == pytest.approx(1.0, abs=1e-6)
    assert cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-6)
    assert cka(x, x @ torch.randn(16, 16)) < 0.99  # a general linear map is not an invariance


def test_cka_of_independent_features_is_near_zero() -> None:
    assert abs(cka(torch.randn(1000, 16), torch.randn(1000, 32))) < 0.02


def test_minibatch_estimate_matches_the_full_batch_within_1e_3() -> None:
    x = torch.randn(4096, 8)
    y = x @ torch.randn(8, 8) + torch.randn(4096, 8)
    full = cka(x, y)
    assert 0.3 < full < 0.9
    accumulator = MinibatchCKA()
    for i in range(0, 4096, 1024):
        accumulator.update({"x": x[i:i + 1024], "y": y[i:i + 1024]})
    assert float(accumulator.matrix()[0, 1]) == pytest.approx(full, abs=1e-3)
    # the mean of the biased (centred Gram) CKA of each minibatch does not
    assert abs(sum(_biased_cka(x[i:i + 1024], y[i:i + 1024]) for i in range(0, 4096, 1024)) / 4 - full) > 1e-3


def _biased_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    return float((x.T @ y).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def test_one_batch_is_exactly_the_full_batch_and_tiny_batches_are_skipped() -> None:
    x, y = torch.randn(64, 5), torch.randn(64, 3)
    accumulator = MinibatchCKA()
    accumulator.update({"x": x, "y": y})
    accumulator.update({"x": x[:3], "y": y[:3]})
    assert float(accumulator.matrix()[0, 1]) == pytest.approx(cka(x, y), abs=1e-12)
    assert accumulator.matrix().diagonal().tolist() == pytest.approx([1.0, 1.0])
    assert accumulator.result()["skipped_images"] == 3
    with pytest.raises(ValueError, match="changed"):
        accumulator.update({"y": y, "x": x})
