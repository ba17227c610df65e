import pytest
import torch

from tokenfusion.explain import ExplainError, Explainer, explain
from tokenfusion.explain.attention import fuse_heads, rollout_matrix
from tokenfusion.models import create


def attention_map(model, x, layer=None, kind=None, **options):
    return explain(model, x, "attention", layer, kind=kind, **options)


def attention_rollout(model, x, kind=None, **options):
    return explain(model, x, "rollout", kind=kind, **options)


def cross_attention_map(model, x, layer=None, **options):
    return explain(model, x, "cross_attention", layer, **options)


def _random_attention(b: int, heads: int, n: int, seed: int) -> torch.Tensor:
    logits = torch.randn(b, heads, n, n, generator=torch.Generator().manual_seed(seed))
    return logits.softmax(-1)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min", 1])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5, 0.9])
def test_rollout_rows_sum_to_one(head_fusion, discard_ratio):
    layers = [_random_attention(2, 4, 11, s) for s in range(3)]
    keep = torch.zeros(11, dtype=torch.bool)
    keep[0] = True
    r = rollout_matrix(layers, head_fusion, discard_ratio, keep)
    assert r.shape == (2, 11, 11)
    assert (r >= 0).all()
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 11))


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(5).expand(1, 2, 5, 5)
    torch.testing.assert_close(rollout_matrix([eye, eye]), torch.eye(5)[None])


def test_rollout_adds_residual_and_renormalises():
    a = _random_attention(1, 1, 4, 0)
    expected = (a[0, 0] + torch.eye(4)) / 2  # rows of a sum to 1, so the row sum of a + I is 2
    torch.testing.assert_close(rollout_matrix([a])[0], expected)


def test_discard_keeps_class_column():
    a = torch.full((1, 1, 4, 4), 0.25)
    a[..., 0] = 0.01
    a = a / a.sum(-1, keepdim=True)
    keep = torch.tensor([True, False, False, False])
    r = rollout_matrix([a], discard_ratio=0.6, keep=keep)  # 1 of 3 non-class columns dropped per row
    assert (r[0, 1:, 0] > 0).all()


@pytest.mark.parametrize("arch,kinds", [("vit", ["patch"]), ("early", ["cnn", "patch"]), ("late", ["cnn", "patch"]),
                                        ("layerwise", ["patch"])])
def test_maps_on_every_attention_model(arch, kinds, tiny, x):
    model = tiny(arch)
    side = model.config.img_size
    assert x.shape[-2:] == (side, side)
    for kind in kinds:
        stride = model.trunk.reductions[-1] if kind == "cnn" else model.config.patch_size
        for fn in (attention_map, attention_rollout):
            e = fn(model, x, kind=kind)
            assert e.kind == kind and e.map.shape == (side, side)
            assert (e.grid >= 0).all() and (e.map >= 0).all() and e.map.max() <= 1
            assert e.grid.shape == (side // stride,) * 2 == (8, 8)  # tiny: stride 8 trunk and 8 px patches at 64 px


def test_attention_grid_is_class_row_of_layout(tiny, x):
    model = tiny("early")
    _, trace = model(x, trace=True)
    layout, weights = trace.layouts["blocks.2"], trace.attention["blocks.2"]
    e = attention_map(model, x, "blocks.2", "cnn", head=1)
    torch.testing.assert_close(e.grid, layout.to_grid(weights[0, 1, 0], "cnn"))


def test_late_rollout_goes_through_stream_and_fusion(tiny, x):
    model = tiny("late")
    _, trace = model(x, trace=True)
    fusion = rollout_matrix([trace.attention["fusion_blocks.0"]])[0, 0]  # head's class token row
    stream = rollout_matrix([trace.attention[f"cnn_blocks.{i}"] for i in range(4)])[0]
    layout = trace.layouts["cnn_blocks.0"]  # [cnn_cls; cnn], at offset 1 in the fusion sequence
    expected = layout.to_grid(fusion[1 : 1 + layout.num_tokens] @ stream, "cnn")
    torch.testing.assert_close(attention_rollout(model, x, "cnn").grid, expected)


@pytest.mark.parametrize("arch", ["vit", "early", "late", "layerwise"])
def test_learn_and_explore_show_the_same_rollout(arch, tiny, x):
    """The Learn page grows the rollout layer by layer, Explore shows it whole: one function, so the
    last step is the map (for ``late`` too, whose CNN and patch streams feed the fusion block)."""
    session = Explainer(tiny(arch), x)
    for kind in session.methods["rollout"].kinds:
        steps = session.rollout_steps(kind)
        shown = session.explain("rollout", kind=kind)
        assert steps[-1][0] == shown.layer
        torch.testing.assert_close(steps[-1][1], shown.grid)
    if arch == "late":
        assert [name for name, _ in session.rollout_steps("cnn")] == [*(f"cnn_blocks.{i}" for i in range(4)),
                                                                       "fusion_blocks.0"]


def test_cross_attention_layerwise(tiny, x):
    model = tiny("layerwise")
    first = cross_attention_map(model, x, "cross_blocks.0")
    last = cross_attention_map(model, x, query="mean")
    stage1, stage2 = (tuple(s // r for s in x.shape[-2:]) for r in model.trunk.reductions)
    assert (stage1, stage2) == ((16, 16), (8, 8))  # tiny at 64 px: strides 4 and 8
    assert first.grid.shape == stage1 and last.grid.shape == stage2  # trunk stage 1 and 2
    assert (first.grid >= 0).all()
    with pytest.raises(ExplainError, match="does not apply to a 'early'"):
        cross_attention_map(tiny("early"), x)


def test_clear_errors(tiny, image):
    with pytest.raises(ExplainError, match="cannot target"):
        attention_map(tiny("vit"), image(), kind="cnn")
    with pytest.raises(ExplainError, match=r"Expected \(layer, kind\) one of \[\('blocks.0'"):
        attention_map(tiny("vit"), image(), layer="blocks.9")
    with pytest.raises(ExplainError, match="head 7 is out of range"):
        fuse_heads(torch.rand(1, 4, 3, 3), 7)


def test_small_fusion_smoke(image):
    torch.manual_seed(0)
    model = create("early", "small", img_size=64, depth=2, num_classes=10).eval()
    e = attention_rollout(model, image(64), "cnn")
    assert e.grid.shape == (4, 4) and e.map.shape == (64, 64)
