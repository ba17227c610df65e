import gc
import warnings

import pytest
import torch
from captum.attr import LayerGradCam

from pytorch_grad_cam.base_cam import BaseCAM

from tokenfusion.explain import METHODS, ExplainError, explain, pearson
from tokenfusion.explain.cam import Cam, TokenReshape
from tokenfusion.explain.cam_classes import backend
from tokenfusion.explain.result import Explanation, to_map
from tokenfusion.models import TokenLayout

CAMS = [name for name, m in METHODS.items() if isinstance(m, Cam)]
PER_CHANNEL = [name for name in CAMS if METHODS[name].per_channel]


def cam(model, x, method, layer=None, target=None, kind=None, **options):
    return explain(model, x, method, layer, target, kind=kind, **options)


def _grid(model, x, kind: str, stage: int = -1) -> tuple[int, int]:
    """The grid of ``model``'s ``kind`` tokens on ``x`` (CNN tokens: of trunk stage ``stage``, the last
    by default). Tiny models at 64 px: 8x8 patch tokens (8 px patches) and 8x8 or 16x16 CNN tokens."""
    side = model.config.img_size
    assert x.shape[-2:] == (side, side)
    stride = model.trunk.reductions[stage] if kind == "cnn" else model.config.patch_size
    return (side // stride,) * 2


@pytest.mark.parametrize("arch", ["cnn", "early", "late"])
def test_gradcam_matches_captum_layer_gradcam(arch, tiny, x):
    model = tiny(arch)
    e = cam(model, x, "gradcam", "trunk.stage2")
    layer = model.get_submodule("trunk.stage2")
    raw = LayerGradCam(model, layer).attribute(x, target=e.target, relu_attributions=False)[0, 0].detach()
    assert e.grid.shape == raw.shape
    assert pearson(e.grid, raw) > 0.99
    side = model.config.img_size
    torch.testing.assert_close(e.map, to_map(raw, (side, side)), atol=1e-4, rtol=0)  # same ReLU, upsampling, min-max


def test_every_cam_in_the_table_names_a_cam_class():
    assert len(CAMS) == 11 and set(PER_CHANNEL) == {"scorecam", "scorecam_topk", "ablationcam"}
    for name in CAMS:  # a method offered is a method that runs
        assert issubclass(backend(METHODS[name].backend), BaseCAM), name


@pytest.mark.parametrize("method", [m for m in CAMS if m not in PER_CHANNEL])
@pytest.mark.parametrize("arch,kind", [("cnn", "cnn"), ("vit", "patch"), ("late", "cnn"), ("late", "patch")])
def test_every_gradient_cam(method, arch, kind, tiny, x):
    model = tiny(arch)
    layer = None if arch == "cnn" else ("fusion_blocks.0.norm1" if arch == "late" else "blocks.3.norm1")
    e = cam(model, x, method, layer, kind=kind)
    assert e.map.shape == x.shape[-2:] and torch.isfinite(e.map).all() and 0 <= e.map.min() <= e.map.max() <= 1
    assert e.grid.shape == _grid(model, x, kind) == (8, 8) and e.kind == kind and e.method == method


@pytest.mark.parametrize("method", ["scorecam", "scorecam_topk", "ablationcam"])
@pytest.mark.parametrize("layer,kind", [("trunk.stage2", "cnn"), ("blocks.3.norm1", "patch"),
                                        ("blocks.3.norm1", "cnn")])
def test_perturbation_cams_on_maps_and_tokens(method, layer, kind, tiny, x, capsys):
    model = tiny("early")
    e = cam(model, x, method, layer, kind=kind, batch_size=32)
    assert e.grid.shape == _grid(model, x, kind) == (8, 8) and torch.isfinite(e.grid).all()


def test_closed_gates_give_the_trunk_no_gradient(tiny, x):
    """A fresh layerwise model has every gate at 0: its output ignores the CNN, so does Grad-CAM."""
    e = cam(tiny("layerwise"), x, "gradcam", "trunk.stage2")
    assert (e.grid == 0).all() and (e.map == 0).all()


def test_layerwise_cnn_keys(tiny, x):
    model = tiny("layerwise")
    e = cam(model, x, "gradcam", "cross_blocks.0.norm_kv")
    # the first cross blocks read trunk stage 1: a 16x16 grid at 64 px (stride 4)
    assert e.kind == "cnn" and e.grid.shape == _grid(model, x, "cnn", stage=0) == (16, 16)


@pytest.mark.parametrize(
    "layout,kind",
    [
        (TokenLayout.build(("cls", 1), ("cnn", (3, 4)), ("patch", (5, 2))), "cnn"),
        (TokenLayout.build(("cls", 1), ("cnn", (3, 4)), ("patch", (5, 2))), "patch"),
        (TokenLayout.build(("cls", 1)) + TokenLayout.build(("cls", 1), ("cnn", (3, 4)))
         + TokenLayout.build(("cls", 1), ("patch", (5, 2))), "patch"),
        (TokenLayout.build(("cnn", (4, 4))), "cnn"),
    ],
)
def test_token_reshape_puts_a_planted_token_in_its_cell(layout, kind):
    span = layout.grid_span(kind)
    h, w = span.grid
    reshape = TokenReshape(layout, kind)
    for r, c in [(0, 0), (h - 1, w - 1), (h // 2, w - 1)]:
        tokens = torch.zeros(2, layout.num_tokens, 8)
        tokens[1, span.start + r * w + c, 3] = 5.0
        for s in layout.spans:  # other tokens are loud, and must not leak in
            if s.kind != kind:
                tokens[:, s.start : s.stop] = 100.0
        grid = reshape(tokens)
        assert grid.shape == (2, 8, h, w)
        hot = (grid != 0).nonzero().tolist()
        assert hot == [[1, 3, r, c]]
        # and the planted cell lands on its own block of pixels in the image-size map
        e = Explanation.from_grid(grid[1, 3], (4 * h, 4 * w), method="t", layer=None, target=0, seconds=0)
        assert e.map[4 * r : 4 * r + 4, 4 * c : 4 * c + 4].max() == 1


def test_reshape_rejects_missing_kind_and_wrong_shape():
    layout = TokenLayout.build(("cls", 1), ("patch", (2, 2)))
    with pytest.raises(KeyError):
        TokenReshape(layout, "cnn")
    with pytest.raises(ExplainError, match="Expected tokens"):
        TokenReshape(layout, "patch")(torch.zeros(1, 7, 4))


def test_cam_errors(tiny, x):
    with pytest.raises(ExplainError, match="pass kind="):
        cam(tiny("early"), x, "gradcam", "blocks.3.norm1")
    with pytest.raises(ExplainError, match=r"Expected one of \['attention'"):
        cam(tiny("vit"), x, "gradcam+++")
    with pytest.raises(ExplainError, match="cannot target layer='blocks.9'"):
        cam(tiny("vit"), x, "gradcam", "blocks.9")
    assert cam(tiny("vit"), x, "gradcam", "blocks.3", kind="patch").layer == "blocks.3"  # inside a declared block


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on deprecated torch.distributed aliases warns
        warnings.simplefilter("ignore", FutureWarning)
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


@pytest.mark.parametrize("arch,layer,kind", [("vit", "blocks.3.norm1", "patch"), ("early", "trunk.stage2", "cnn")])
def test_repeated_cams_leak_nothing(arch, layer, kind, tiny, x, hook_count):
    model = tiny(arch)
    hooks = hook_count(model)
    for _ in range(3):  # warm-up: caches, lazily built state
        cam(model, x, "gradcam", layer, kind=kind)
    before = _live_tensors()
    for i in range(100):
        cam(model, x, "gradcam++" if i % 2 else "gradcam", layer, kind=kind)
    assert hook_count(model) == hooks
    assert _live_tensors() - before <= 5
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_after_an_error(tiny, x, hook_count):
    model = tiny("vit")
    hooks = hook_count(model)
    with pytest.raises(ExplainError):
        cam(model, x, "gradcam", target=1000)
    handle = model.blocks[3].norm1.register_forward_hook(lambda m, i, o: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        with pytest.raises(RuntimeError, match="boom"):
            cam(model, x, "gradcam", "blocks.3.norm1")
    finally:
        handle.remove()
    assert hook_count(model) == hooks


@pytest.mark.parametrize("layer,kind", [("trunk.stage2", "cnn"), ("blocks.3.norm1", "patch")])
def test_scorecam_topk_with_every_channel_is_scorecam(tiny, x, layer, kind):
    model = tiny("early")
    full = cam(model, x, "scorecam", layer, kind=kind, batch_size=64)
    every = cam(model, x, "scorecam_topk", layer, kind=kind, batch_size=64, channels=10_000)
    torch.testing.assert_close(every.grid, full.grid, atol=1e-6, rtol=1e-5)
    few = cam(model, x, "scorecam_topk", layer, kind=kind, batch_size=64, channels=4)
    assert few.method == "scorecam_topk" and not torch.allclose(few.grid, full.grid)


def test_scorecam_topk_weighs_only_the_most_varied_channels(tiny, x):
    """The map is the weighted sum of the k channels of largest spatial variance, nothing else."""
    model = tiny("cnn")
    with torch.no_grad():
        features = model(x, trace=True)[1].cnn_features[-1][0]  # (C, h, w)
    top = features.flatten(1).var(1).argsort(descending=True)[:3]
    e = cam(model, x, "scorecam_topk", "trunk.stage2", channels=3)
    basis = features[top].flatten(1).T  # (h*w, 3): the grid lies in the span of the three chosen channels
    solution = torch.linalg.lstsq(basis, e.grid.flatten()[:, None]).solution
    torch.testing.assert_close((basis @ solution).flatten(), e.grid.flatten(), atol=1e-5, rtol=1e-4)
    assert (solution > 0).all() and abs(float(solution.sum()) - 1) < 1e-4  # softmax weights


def test_scorecam_topk_needs_a_channel(tiny, x):
    with pytest.raises(ExplainError, match="channels must be at least 1"):
        cam(tiny("cnn"), x, "scorecam_topk", channels=0)
