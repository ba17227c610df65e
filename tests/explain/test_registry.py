import pytest
import torch

from tokenfusion.explain import (
    METHODS, ExplainError, Explainer, Passes, Request, available_methods, explain, forward_passes, measure_forward,
)
from tokenfusion.explain.attribution import Attribution
from tokenfusion.explain.spec import FAMILIES
from tokenfusion.models import create

FAST_OPTIONS = {"integrated_gradients": {"n_steps": 4}, "smoothgrad": {"n_samples": 4}, "occlusion": {"window": 0.25},
                "scorecam": {"batch_size": 64}, "ablationcam": {"batch_size": 64}}
SLOW = {"scorecam", "ablationcam"}


@pytest.mark.parametrize("arch", ["cnn", "vit", "early", "late", "layerwise"])
def test_every_method_on_every_architecture(arch, tiny, x):
    model = tiny(arch)
    methods = {m.name: m for m in available_methods(model)}
    assert ("attention" in methods) == (arch != "cnn")
    assert ("cross_attention" in methods) == (arch == "layerwise")
    has_cnn_tokens = any(k == "cnn" for m in methods.values() if m.family == "attention" for k in m.kinds)
    assert has_cnn_tokens == (arch in ("early", "late", "layerwise"))
    for name, info in methods.items():
        if name in SLOW and arch not in ("cnn", "vit"):
            continue
        e = explain(model, x, name, target=1, **FAST_OPTIONS.get(name, {}))
        assert e.method == name and e.target == 1
        if name == "rollout":
            assert e.kind == info.default[1]
        elif info.family in ("attention", "cam"):
            assert (e.layer, e.kind) == info.default
        assert e.map.shape == x.shape[-2:] and torch.isfinite(e.map).all() and e.seconds > 0


def test_kind_only_picks_the_last_layer_of_that_kind(tiny, x):
    e = explain(tiny("early"), x, "gradcam", kind="patch")
    assert (e.layer, e.kind) == ("blocks.3.norm1", "patch")
    e = explain(tiny("late"), x, "attention", layer="cnn_blocks.1", head=0)
    assert e.kind == "cnn"


def test_errors_list_what_is_allowed(tiny, x):
    with pytest.raises(ExplainError, match=r"Expected one of \['gradcam'"):
        explain(tiny("cnn"), x, "rollout")
    with pytest.raises(ExplainError, match=r"trunk.stage2"):
        explain(tiny("cnn"), x, "gradcam", layer="blocks.0.norm1")
    with pytest.raises(ExplainError, match=r"Unknown options \['steps'\]"):
        explain(tiny("vit"), x, "integrated_gradients", steps=3)
    with pytest.raises(ExplainError, match="pass kind="):
        explain(tiny("early"), x, "attention", layer="blocks.1")
    with pytest.raises(ExplainError, match="out of range"):
        explain(tiny("vit"), x, "attention", target=12)
    with pytest.raises(ExplainError, match="one image"):
        explain(tiny("vit"), x.expand(2, -1, -1, -1), "attention")


def test_small_late_fusion_smoke(image):
    torch.manual_seed(0)
    model = create("late", "small", img_size=64, depth=2, num_classes=10).eval()
    x = image(64)
    for method in ("attention", "rollout", "gradcam"):
        for kind in ("cnn", "patch"):
            e = explain(model, x, method, kind=kind)
            assert e.map.shape == (64, 64) and e.grid.shape == (4, 4)
    e = explain(model, x, "gradcam", layer="trunk.layer2")
    assert e.grid.shape == (8, 8)


def test_the_table_names_each_method_once_in_a_known_family(tiny) -> None:
    assert all(name == method.name for name, method in METHODS.items())
    assert {method.family for method in METHODS.values()} == set(FAMILIES)
    model = tiny("early")
    cost = measure_forward(model, repeats=1)
    for info in available_methods(model):  # a method "uses gradients" exactly when it sends images backward
        backwards = forward_passes(model, cost, Request(info.name)).backwards
        assert (backwards > 0) == METHODS[info.name].gradients, info.name


class _Saliency(Attribution):
    """The example of docs/design.md ("Adding a method"): vanilla gradients, one class and one table entry."""

    name = "saliency"
    family = "gradient"
    gradients = True
    options = {"abs": True}

    def passes(self, model, channels, layer, kind, options) -> Passes:
        return Passes(1, 1)

    def attribute(self, model, x, target, *, abs):
        from captum.attr import Saliency as Captum

        return Captum(model).attribute(x, target=target, abs=abs)


def test_a_method_added_to_the_table_is_served_listed_and_costed(tiny, x, monkeypatch) -> None:
    monkeypatch.setitem(METHODS, "saliency", _Saliency())
    model = tiny("vit")
    assert "saliency" in [m.name for m in available_methods(model)]
    session = Explainer(model, x)
    e = session.answer(Request.of("saliency", abs=False), target=2)
    assert (e.method, e.target, e.layer, e.grid.shape) == ("saliency", 2, None, x.shape[-2:])
    torch.testing.assert_close(session.explain("saliency", target=2, abs=False).grid, e.grid)
    assert forward_passes(model, measure_forward(model, repeats=1), Request.of("saliency")) == Passes(1, 1)
    with pytest.raises(ExplainError, match=r"Unknown options \['steps'\] for 'saliency'. Expected some of \['abs'\]"):
        session.explain("saliency", steps=3)
