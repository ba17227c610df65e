"""The explanation session: one traced forward per image serves every method, with the registry's checks."""
from __future__ import annotations

import pytest
import torch

from tokenfusion.explain import ExplainError, Explainer, available_methods, explain

from .conftest import ARCHS

FAST = {"integrated_gradients": dict(n_steps=4), "smoothgrad": dict(n_samples=2)}
SLOW = ("scorecam", "ablationcam", "occlusion", "integrated_gradients", "smoothgrad")


def test_one_traced_forward_serves_every_method(tiny, x, monkeypatch) -> None:
    model = tiny("late")
    session = Explainer(model, x)
    calls = []
    monkeypatch.setattr(type(model), "forward_features",
                        lambda self, *a, _f=type(model).forward_features, **k: calls.append(1) or _f(self, *a, **k))
    for method in ("attention", "rollout"):
        session.explain(method, kind="cnn")
    session.predict([str(i) for i in range(12)]), session.fusion()
    assert calls == []  # attention, rollout, prediction and fusion weights come from the session's trace


@pytest.mark.parametrize("arch", ARCHS)
def test_session_maps_equal_the_one_call_form(arch, tiny, x) -> None:
    model, session = tiny(arch), Explainer(tiny(arch), x)
    for info in available_methods(model):
        options = FAST.get(info.name, {})
        if info.name in SLOW[:3]:
            continue
        torch.manual_seed(0)
        a = session.explain(info.name, **options)
        torch.manual_seed(0)
        b = explain(model, x, info.name, **options)
        torch.testing.assert_close(a.map, b.map, msg=f"{arch} {info.name}")
        assert (a.layer, a.kind) == (b.layer, b.kind) and a.kind == info.default[1]


@pytest.mark.parametrize("arch", ARCHS)
def test_the_randomisation_test_runs_for_every_map(arch, tiny, x) -> None:
    """Reference and randomised maps are made by one request: no map is refused half way (rollout was).
    The perturbation methods (many forwards each) and the sampled attributions are left out for time."""
    session = Explainer(tiny(arch), x)
    for name, info in session.methods.items():
        if name not in SLOW:
            check = session.randomisation(name, *info.default, steps=2)
            assert len(check.correlations) == 2 and all(-1.0 - 1e-6 <= c <= 1.0 + 1e-6 for c in check.correlations), name


def test_requests_are_checked_by_the_registry(tiny, x) -> None:
    session = Explainer(tiny("layerwise"), x)
    with pytest.raises(ExplainError, match="cannot target"):
        session.explain("attention", kind="cnn")  # layerwise CNN tokens enter by cross-attention
    with pytest.raises(ExplainError, match="Unknown options"):
        session.explain("rollout", head=1)
    assert session.explain("cross_attention").kind == "cnn"
