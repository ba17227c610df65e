import pytest
import torch

from tokenfusion.explain import (
    centre_prior, deletion_curve, explain, insertion_curve, mask_energy, pointing_game, pointing_tolerance,
    randomisation_check, spearman,
)
from tokenfusion.explain.metrics import auc, cascade_units, is_blank
from tokenfusion.explain.result import Explanation


@pytest.fixture
def mask() -> torch.Tensor:
    m = torch.zeros(48, 48, dtype=torch.bool)
    m[10:20, 30:40] = True
    return m


def test_perfect_map_scores_one(mask):
    perfect = mask.float()
    assert pointing_game(perfect, mask) == 1.0
    assert mask_energy(perfect, mask) == 1.0


def test_map_outside_scores_zero_and_tolerance_helps(mask):
    outside = torch.zeros(48, 48)
    outside[22, 35] = 1.0  # three pixels below the object's last row (19)
    assert pointing_game(outside, mask) == 0.0 and mask_energy(outside, mask) == 0.0
    assert pointing_game(outside, mask, tolerance=3) == 1.0
    assert pointing_game(outside, mask, tolerance=2) == 0.0


def test_the_tolerance_scales_zhang_et_al_15_px_at_224_to_the_image():
    assert [pointing_tolerance(side) for side in (224, 64, 48, 32, 448)] == [15, 4, 3, 2, 30]


def test_the_centre_prior_peaks_on_the_centre_whatever_the_image(mask):
    prior = centre_prior(48)
    assert prior.shape == (48, 48) and float(prior.max()) == 1.0
    peaks = (prior == prior.max()).nonzero().tolist()
    assert peaks == [[23, 23], [23, 24], [24, 23], [24, 24]]  # an even side: the central 2 x 2 pixels tie
    assert torch.equal(prior, prior.flip(0)) and torch.equal(prior, prior.T)
    assert float(centre_prior(48, sigma=0.25)[0, 0]) > float(prior[0, 0])  # wider: more weight on the corners
    assert centre_prior(31, 48).shape == (31, 48) and (centre_prior(31, 48) == 1).nonzero().tolist() == [[15, 23], [15, 24]]
    # The object (rows 10-19, columns 30-39) is 6 columns right of the central pixels and 4 rows above them.
    assert pointing_game(prior, mask) == 0.0 and pointing_game(prior, mask, tolerance=6) == 1.0
    assert pointing_game(prior, mask, tolerance=5) == 0.0


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_blank_map_is_a_miss(mask, value):
    # A constant map has its maximum everywhere, inside the mask too: it must not count as a hit.
    blank = torch.full((48, 48), value)
    assert is_blank(blank) and pointing_game(blank, mask) == 0.0
    assert pointing_game(blank, mask, tolerance=5) == 0.0
    almost = blank.clone()
    almost[15, 35] += 1e-3  # one pixel above the rest, inside the object: a hit
    assert not is_blank(almost) and pointing_game(almost, mask) == 1.0


def test_uniform_map_energy_is_mask_area(mask):
    assert mask_energy(torch.ones(48, 48), mask) == pytest.approx(100 / 48**2)
    assert mask_energy(torch.zeros(48, 48), mask) == 0.0


def test_auc():
    assert auc(torch.full((11,), 0.3)) == pytest.approx(0.3)
    assert auc(torch.linspace(0, 1, 5)) == pytest.approx(0.5)
    assert auc(torch.tensor([1.0, 0.0])) == pytest.approx(0.5)


def test_spearman():
    a = torch.randn(100, generator=torch.Generator().manual_seed(0))
    assert spearman(a, a.exp()) == pytest.approx(1.0)  # any increasing function
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 2, 2, 3]), torch.tensor([1.0, 5, 5, 7])) == pytest.approx(1.0)  # ties
    assert abs(spearman(a, torch.randn(100, generator=torch.Generator().manual_seed(1)))) < 0.3


@pytest.mark.parametrize("baseline", ["blur", "mean"])
def test_curves_end_where_they_should(baseline, tiny, x):
    model = tiny("vit")
    saliency = torch.rand(*x.shape[-2:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    base = {"blur": None, "mean": torch.zeros_like(x)}[baseline]
    d = deletion_curve(model, x, saliency, 2, steps=10, baseline=baseline, batch_size=4)
    i = insertion_curve(model, x, saliency, 2, steps=10, baseline=baseline)
    assert d.scores.shape == (11,) and d.fractions[0] == 0 and d.fractions[-1] == 1
    assert d.scores[0] == pytest.approx(float(probs[2]), abs=1e-5)  # nothing deleted yet
    assert i.scores[-1] == pytest.approx(float(probs[2]), abs=1e-5)  # everything inserted
    assert d.scores[-1] == pytest.approx(float(i.scores[0]), abs=1e-5)  # both are the baseline image
    if base is not None:
        with torch.no_grad():
            assert d.scores[-1] == pytest.approx(float(model(base).softmax(-1)[0, 2]), abs=1e-5)


def test_deletion_removes_the_pixels_the_model_needs(tiny, x):
    """A map that points at what the model uses gives a lower deletion AUC than its reverse."""
    model = tiny("cnn")
    e = explain(model, x, "gradcam")
    good = deletion_curve(model, x, e.map, e.target, steps=8, baseline="mean").auc
    bad = deletion_curve(model, x, -e.map, e.target, steps=8, baseline="mean").auc
    assert good <= bad


def test_cascade_goes_from_head_to_stem(tiny):
    units = cascade_units(tiny("late"))
    assert units[:3] == ["head", "norm", "fusion_blocks.0"]
    assert units[-1] == "trunk.stem" and units.index("patch_blocks.0") < units.index("patch_tokens")


def test_randomisation_check(tiny, x):
    model = tiny("early")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    e = explain(model, x, "gradcam", "blocks.3.norm1", kind="patch")
    gradcam = lambda m, x: explain(m, x, "gradcam", "blocks.3.norm1", kind="patch", target=e.target)  # noqa: E731
    unchanged = randomisation_check(model, x, gradcam, steps=1, reference=e)
    assert unchanged.correlations[0] < 0.9  # one step randomises everything
    blind = lambda m, x: Explanation.from_grid(  # noqa: E731
        x[0].abs().sum(0), tuple(x.shape[-2:]), method="edge", layer=None, target=0, seconds=0)
    result = randomisation_check(model, x, blind, steps=3)
    assert result.correlations == pytest.approx([1.0, 1.0, 1.0])  # a map that ignores the weights
    assert len(result.units) == 3 and result.units[0] == "head" and result.units[-1] == "trunk.stem"
    again = randomisation_check(model, x, gradcam, steps=3, reference=e)
    assert again.correlations[-1] < 0.9 and max(abs(c) for c in again.correlations) <= 1.0
    for k, v in model.state_dict().items():  # the original model is untouched
        assert torch.equal(v, before[k]), k
    assert spearman(e.map, gradcam(model, x).map) == pytest.approx(1.0)  # and deterministic
