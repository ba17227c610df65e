import pytest
import torch
from captum.attr import IntegratedGradients

from tokenfusion.explain import ExplainError, explain


def integrated_gradients(model, x, target=None, **options):
    return explain(model, x, "integrated_gradients", target=target, **options)


def smoothgrad(model, x, target=None, **options):
    return explain(model, x, "smoothgrad", target=target, **options)


def occlusion(model, x, target=None, **options):
    return explain(model, x, "occlusion", target=target, **options)


def test_integrated_gradients_is_captum_abs_summed(tiny, x):
    model = tiny("late")
    e = integrated_gradients(model, x, target=4, n_steps=8, internal_batch_size=4)
    raw = IntegratedGradients(model).attribute(x, torch.zeros_like(x), target=4, n_steps=8)
    torch.testing.assert_close(e.grid, raw[0].abs().sum(0).detach(), atol=1e-5, rtol=1e-4)
    assert e.target == 4 and e.kind is None and e.map.max() == 1


def test_completeness_of_integrated_gradients(tiny, x):
    """IG's attributions add up to the logit difference from the baseline (Sundararajan et al.)."""
    model = tiny("cnn")
    raw = IntegratedGradients(model).attribute(x, torch.zeros_like(x), target=0, n_steps=64, method="gausslegendre")
    with torch.no_grad():
        gap = model(x)[0, 0] - model(torch.zeros_like(x))[0, 0]
    assert float(raw.sum()) == pytest.approx(float(gap), rel=0.05, abs=1e-3)


def test_smoothgrad_and_occlusion(tiny, x):
    model = tiny("vit")
    e = smoothgrad(model, x, n_samples=4, batch_size=2)
    assert e.grid.shape == x.shape[-2:] and (e.grid >= 0).all()
    window = x.shape[-1] // 4
    assert window == 16
    e = occlusion(model, x, window=0.25, stride=1.0)  # 16 px windows at 64 px, no overlap: a 4 x 4 grid of blocks
    block = e.grid[:window, :window]
    assert torch.allclose(block, block[0, 0].expand_as(block))
    with pytest.raises(ExplainError, match="fractions"):
        occlusion(model, x, window=6)


def test_smoothgrad_gives_the_same_map_every_time_and_leaves_the_random_state_alone(tiny, x):
    """Scores and pictures of SmoothGrad are reproducible: its noise comes from its own seed."""
    model = tiny("vit")
    torch.manual_seed(1)
    before = torch.rand(3)
    torch.manual_seed(1)
    first = smoothgrad(model, x, n_samples=4, batch_size=2)
    assert torch.equal(torch.rand(3), before)  # the caller's random stream is where it was
    assert torch.equal(smoothgrad(model, x, n_samples=4, batch_size=2).grid, first.grid)
    assert not torch.equal(smoothgrad(model, x, n_samples=4, batch_size=2, seed=1).grid, first.grid)
