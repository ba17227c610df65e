"""Our metrics against the field's reference, Quantus, on the same arrays: the pointing game
(``quantus.PointingGame``), mask energy (``quantus.RelevanceMassAccuracy``) and the cascading
randomisation check (``quantus.MPRT``, top-down). Where we differ on purpose (blank maps), the
test says so."""
from types import SimpleNamespace

import numpy as np
import pytest
import quantus
import torch
from torch import nn

from tokenfusion.data import SynthShapes
from tokenfusion.explain import mask_energy, pointing_game, randomisation_check, spearman
from tokenfusion.explain.metrics import is_blank

SIZE = 64  # the teaching size (SynthShapes v2; tiny models, 8-px tokens)
GRID = SIZE // 8


def _maps_and_masks() -> tuple[np.ndarray, np.ndarray]:
    """Twelve held-out SynthShapes masks ``(12, SIZE, SIZE)`` and a map per mask of every shape the
    scores meet: random values, coarse grids with ties (as upsampled token maps have), one blob
    inside or beside the object, and blank maps (all zero, constant)."""
    data = SynthShapes(12, image_size=SIZE, seed=12345)
    masks = np.stack([data.sample(i).mask for i in range(12)]).astype(bool)
    g = torch.Generator().manual_seed(0)
    maps = []
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        cy, cx = (ys.mean(), xs.mean()) if i % 2 else (SIZE - 1 - ys.mean(), SIZE - 1 - xs.mean())
        yy, xx = np.mgrid[:SIZE, :SIZE]
        kind = i % 4
        if kind == 0:
            m = torch.rand(SIZE, SIZE, generator=g).numpy()
        elif kind == 1:
            m = torch.rand(GRID, GRID, generator=g).repeat_interleave(8, 0).repeat_interleave(8, 1).numpy()
        elif kind == 2:
            m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 50.0)
        else:
            m = np.full((SIZE, SIZE), 0.0 if i < 6 else 0.7)
        maps.append(m.astype(np.float32))
    return np.stack(maps), masks


def _quantus(metric, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    x = np.zeros((len(maps), 3, SIZE, SIZE), np.float32)  # not read by localisation metrics
    return np.array(metric(model=None, x_batch=x, y_batch=np.zeros(len(maps), int), a_batch=maps[:, None],
                           s_batch=masks[:, None].astype(np.float32)), dtype=float)


def test_pointing_game_matches_quantus_except_on_blank_maps():
    maps, masks = _maps_and_masks()
    theirs = _quantus(quantus.PointingGame(normalise=False, abs=False, disable_warnings=True), maps, masks)
    ours = np.array([pointing_game(torch.from_numpy(m), torch.from_numpy(s)) for m, s in zip(maps, masks)])
    blank = np.array([is_blank(torch.from_numpy(m)) for m in maps])
    assert blank.sum() == 3 and 0 < ours[~blank].sum() < (~blank).sum()  # hits and misses both met
    np.testing.assert_array_equal(ours[~blank], theirs[~blank])
    # Quantus counts a constant map as a hit (its maximum is everywhere, the object included);
    # we count it as a miss: a blank map points nowhere.
    assert (theirs[blank] == 1).all() and (ours[blank] == 0).all()


def test_mask_energy_is_quantus_relevance_mass_accuracy():
    maps, masks = _maps_and_masks()
    theirs = _quantus(quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True), maps, masks)
    ours = np.array([mask_energy(torch.from_numpy(m), torch.from_numpy(s)) for m, s in zip(maps, masks)])
    zero = maps.reshape(len(maps), -1).max(1) == 0
    np.testing.assert_allclose(ours[~zero], theirs[~zero], rtol=1e-5)
    # An all-zero map has no mass: Quantus divides 0 by 0 (nan), we report 0 energy.
    assert np.isnan(theirs[zero]).all() and (ours[zero] == 0).all()


def test_spearman_matches_quantus_on_maps_with_ties():
    maps, _ = _maps_and_masks()
    varied = [m for m in maps if not is_blank(torch.from_numpy(m))]
    for a, b in zip(varied[:-1], varied[1:]):
        theirs = quantus.similarity_func.correlation_spearman(a.ravel(), b.ravel())
        assert spearman(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(float(theirs), abs=1e-9)
    # A constant map has no ranks: scipy (so Quantus) gives nan, we give 0, and the scoring
    # command leaves blank maps out of the randomisation check.
    with pytest.warns(Warning):
        assert np.isnan(quantus.similarity_func.correlation_spearman(maps[3].ravel(), varied[0].ravel()))
    assert spearman(torch.from_numpy(maps[3]), torch.from_numpy(varied[0])) == 0.0


class _Conv(nn.Conv2d):
    """A convolution whose re-initialisation draws from its own seed, so that our cascade and
    Quantus' (each seeding torch's generator its own way) build the same randomised models."""

    def reset_parameters(self) -> None:
        g = torch.Generator().manual_seed(self.weight.numel())
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=g) * 0.3)
            self.bias.copy_(torch.randn(self.bias.shape, generator=g) * 0.1)


class _Linear(nn.Linear):
    reset_parameters = _Conv.reset_parameters


class _Net(nn.Sequential):
    """A plain stack that declares its parts as the library's models do."""

    def parts_in_forward_order(self) -> list[str]:
        return [name for name, child in self.named_children() if any(True for _ in child.parameters())]


def _saliency(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Gradient x input of the target logit, summed over channels: ``(B, H, W)``."""
    x = x.clone().requires_grad_(True)
    model(x)[:, target].sum().backward()
    return (x.grad * x).sum(1).detach()


def test_randomisation_cascade_matches_quantus_mprt():
    torch.manual_seed(0)
    model = _Net(_Conv(3, 4, 3, padding=1), nn.ReLU(), _Conv(4, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), _Linear(4, 3)).eval()
    with torch.no_grad():  # "trained" weights, unlike any re-initialisation
        for p in model.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    target = 1
    quantus_explain = lambda model, inputs, targets, **kw: _saliency(model, torch.as_tensor(inputs), target).numpy()  # noqa: E731
    mprt = quantus.MPRT(layer_order="top_down", similarity_func=quantus.similarity_func.correlation_spearman,
                        abs=False, normalise=False, disable_warnings=True)
    theirs = mprt(model=model, x_batch=x.numpy(), y_batch=np.full(3, target), a_batch=None, device="cpu",
                  explain_func=quantus_explain, explain_func_kwargs={})
    layers = [name for name in theirs if name != "original"]
    assert layers == ["6", "2", "0"]  # head first, down to the first convolution
    for i in range(len(x)):
        ours = randomisation_check(model, x[i:i + 1], lambda m, xi: SimpleNamespace(map=_saliency(m, xi, target)[0]))
        assert ours.units == layers
        np.testing.assert_allclose(ours.correlations, [theirs[name][i] for name in layers], atol=1e-6)
        assert ours.correlations[-1] < 0.9  # every layer randomised: the map has changed
