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
    calls, forward = [], type(model).forward_features
    monkeypatch.setattr(type(model), "forward_features", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
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


FUSION = ("early", "late", "layerwise")


def _same(a, b) -> bool:
    return (a.prediction.names == b.prediction.names
            and torch.allclose(torch.tensor(a.prediction.probabilities), torch.tensor(b.prediction.probabilities))
            and all(torch.allclose(a.maps[k].map, b.maps[k].map) for k in a.maps))


@pytest.mark.parametrize("arch", FUSION)
def test_removing_the_whole_image_as_a_region_removes_the_kind_everywhere(arch, tiny, x) -> None:
    session = Explainer(tiny(arch), x)
    for kind in session.model.structure.token_kinds:
        for mode, start in (("mean", 1), ("zero", 2)):
            everywhere = session.what_if(kind, start, mode)
            region = session.what_if(kind, start, mode, region=(0, 0, 1, 1))
            assert region.places == everywhere.places and _same(region, everywhere), (kind, mode)


@pytest.mark.parametrize("arch", FUSION)
def test_an_empty_region_changes_nothing_and_a_region_changes_the_prediction(arch, tiny, x) -> None:
    session = Explainer(tiny(arch), x)
    plain = session.predict([str(i) for i in range(12)])
    empty = session.what_if(None, 1, "zero", region=(0.25, 0.5, 0.75, 0.5))  # no height
    assert empty.prediction.probabilities == pytest.approx(plain.probabilities, abs=1e-6)
    # Patch tokens under the middle of the image, zeroed from the first place on (every random-weight
    # model reads its patch tokens from the first block; layerwise's gates start closed).
    middle = session.what_if(None, 1, "zero", region=(0.25, 0.25, 0.75, 0.75))
    assert middle.prediction.probabilities != pytest.approx(plain.probabilities, abs=1e-4)
    assert set(middle.places) == {p for depth in session.places(None) for p in depth.split(" + ")}  # both kinds


def test_a_region_is_checked(tiny, x) -> None:
    session = Explainer(tiny("early"), x)
    with pytest.raises(ExplainError, match="fractions of the image"):
        session.what_if(None, region=(0.5, 0, 0.2, 1))
    with pytest.raises(ExplainError, match="Say what to remove"):
        session.what_if(None)
    with pytest.raises(ExplainError, match="no 'cnn' tokens"):
        Explainer(tiny("vit"), x).what_if("cnn")
