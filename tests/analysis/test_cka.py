"""Minibatch linear CKA with the unbiased HSIC: invariances, independence, agreement with full batch;
token by token where the grids match, on each image's mean token where they differ."""
from __future__ import annotations

import pytest
import torch

from tokenfusion.analysis import MinibatchCKA, cka, gram, hsic1, hsic1_tokens


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


def test_hsic_from_cross_covariances_is_the_gram_one() -> None:
    x = torch.randn(40, 6) + 3  # far from centred: the terms cancel
    y = x @ torch.randn(6, 4) + torch.randn(40, 4) - 2
    expected = hsic1(torch.stack([gram(x), gram(y)]))
    assert torch.allclose(hsic1_tokens([x, y]), expected, rtol=1e-9, atol=1e-9)


def test_tokens_on_the_same_grid_are_compared_token_by_token() -> None:
    x = torch.randn(6, 9, 5)
    y = x @ torch.randn(5, 3) + 0.5 * torch.randn(6, 9, 3)
    accumulator = MinibatchCKA()
    accumulator.update({"x": x, "y": y}, {"x": (3, 3), "y": (3, 3)})
    # rows: the 54 tokens of the 6 images, token t of image b against token t of image b
    assert float(accumulator.matrix()[0, 1]) == pytest.approx(cka(x.flatten(0, 1), y.flatten(0, 1)), abs=1e-10)
    assert accumulator.result()["representation"] == [["tokens", "tokens"], ["tokens", "tokens"]]
    assert accumulator.result()["grids"] == [[3, 3], [3, 3]]


def test_where_the_tokens_sit_matters_token_by_token_and_not_on_the_mean() -> None:
    x = torch.randn(32, 16, 8)
    moved = x[:, torch.randperm(16)]  # the same tokens of every image, in other places
    accumulator = MinibatchCKA()
    accumulator.update({"x": x, "moved": moved}, {"x": (4, 4), "moved": (4, 4)})
    assert float(accumulator.matrix()[0, 1]) < 0.2
    assert cka(x.mean(1), moved.mean(1)) == pytest.approx(1.0, abs=1e-9)


def test_other_grids_and_image_vectors_are_compared_on_the_mean_token() -> None:
    x, z, v = torch.randn(6, 9, 5), torch.randn(6, 4, 5), torch.randn(6, 7)
    z = z + x[:, :4]
    accumulator = MinibatchCKA()
    accumulator.update({"x": x, "z": z, "v": v}, {"x": (3, 3), "z": (2, 2)})
    matrix, result = accumulator.matrix(), accumulator.result()
    assert float(matrix[0, 1]) == pytest.approx(cka(x.mean(1), z.mean(1)), abs=1e-10)
    assert float(matrix[0, 2]) == pytest.approx(cka(x.mean(1), v), abs=1e-10)
    assert result["representation"] == [["tokens", "mean", "mean"], ["mean", "tokens", "mean"],
                                         ["mean", "mean", "mean"]]
    assert result["grids"] == [[3, 3], [2, 2], None] and matrix.diagonal().tolist() == pytest.approx([1.0] * 3)


def test_token_cka_sums_the_hsic_of_every_minibatch() -> None:
    x = torch.randn(12, 4, 3)
    y = x.square() + torch.randn(12, 4, 3)
    accumulator = MinibatchCKA()
    h = torch.zeros(2, 2, dtype=torch.float64)
    for i in (0, 6):
        accumulator.update({"x": x[i:i + 6], "y": y[i:i + 6]}, {"x": (2, 2), "y": (2, 2)})
        h += hsic1(torch.stack([gram(x[i:i + 6].flatten(0, 1)), gram(y[i:i + 6].flatten(0, 1))]))
    assert float(accumulator.matrix()[0, 1]) == pytest.approx(float(h[0, 1] / (h[0, 0] * h[1, 1]).sqrt()), abs=1e-10)


def test_tokens_need_a_grid_that_stays() -> None:
    accumulator = MinibatchCKA()
    with pytest.raises(ValueError, match="need their grid"):
        accumulator.update({"x": torch.randn(4, 4, 2)})
    with pytest.raises(ValueError, match="not a"):
        accumulator.update({"x": torch.randn(4, 4, 2)}, {"x": (3, 3)})
    accumulator.update({"x": torch.randn(4, 4, 2)}, {"x": (2, 2)})
    with pytest.raises(ValueError, match="Grids changed"):
        accumulator.update({"x": torch.randn(4, 4, 2)}, {"x": (1, 4)})
