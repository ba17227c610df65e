import pytest
import torch

from tokenfusion.explain import ExplainError, available_methods, explain
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
        elif info.family != "attribution":
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
