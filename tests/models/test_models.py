"""The five architectures as a user meets them: shapes, gradients, trace, layout, fusion weights.

Every architecture runs at ``tiny`` (64 px); the fusion models also at ``small`` (ResNet-50 to
layer3 + ViT-S/16), at 224 px where a single forward suffices and at 96 px elsewhere, so the
position embeddings of both token kinds are resampled.
"""
from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokenfusion.explain import fusion_weights_of
from tokenfusion.models import (
    ARCHITECTURES,
    TokenFusionModel,
    TokenLayout,
    Trace,
    count_flops,
    count_parameters,
    create,
)
from tokenfusion.models.pos_embed import PositionEmbedding2d

ROOT = Path(__file__).resolve().parents[2]
FUSION = ("late", "early", "layerwise")
OTHER_INPUT = {"tiny": 96, "small": 96}  # a second input size, not the one the model was built for
BATCH = {"tiny": 2, "small": 1}

CASES = [pytest.param(a, "tiny", id=f"{a}-tiny") for a in ARCHITECTURES] + [
    pytest.param(a, "small", id=f"{a}-small") for a in FUSION
]
TRANSFORMER_CASES = [c for c in CASES if c.values[0] != "cnn"]
FUSION_CASES = [c for c in CASES if c.values[0] in FUSION]
SHARE_CASES = [c for c in CASES if c.values[0] in ("early", "late")]


@functools.cache
def shared(arch: str, size: str) -> TokenFusionModel:
    """One model per (arch, size) for the tests that only read it (eval mode, never modified)."""
    torch.manual_seed(0)
    return create(arch, size).eval()


def fresh(arch: str, size: str) -> TokenFusionModel:
    """A model a test may change (gates, gradients); ``small`` ones keep their trunk and width but
    only two blocks, which still covers both trunk stages in ``layerwise``, to keep the tests fast."""
    return create(arch, size, **({"depth": 2} if size == "small" else {}))


def images(size: str, px: int | None = None, batch: int | None = None) -> Tensor:
    px = px or (64 if size == "tiny" else 224)
    return torch.randn(batch or BATCH[size], 3, px, px)


def open_gates(model: nn.Module, value: float = 0.5) -> None:
    """Set every ``layerwise`` gate parameter ``g`` (the block scales by ``tanh(g)``)."""
    with torch.no_grad():
        for block in model.cross_blocks:
            block.gate.fill_(value)


def traced(model: TokenFusionModel, x: Tensor) -> tuple[Tensor, Trace]:
    with torch.inference_mode():
        return model(x, trace=True)


def grad_sum(params) -> float:
    """Total absolute gradient; a parameter that received none counts as zero."""
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


# --------------------------------------------------------------------------- shapes and the trace


@pytest.mark.parametrize("arch,size", CASES)
def test_logits_shape_at_built_and_other_input_size(arch: str, size: str) -> None:
    model = shared(arch, size)
    assert OTHER_INPUT[size] != model.config.img_size
    for px in (model.config.img_size, OTHER_INPUT[size]):
        x = images(size, px)
        with torch.inference_mode():
            logits = model(x)
        assert logits.shape == (len(x), model.config.num_classes), f"input {px} px"
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", FUSION)
def test_non_square_input_gives_non_square_grids(arch: str) -> None:
    model = shared(arch, "tiny")
    logits, trace = traced(model, torch.randn(1, 3, 48, 64))
    assert logits.shape == (1, model.config.num_classes)
    patch_layouts = [lay for lay in trace.layouts.values() if "patch" in lay.kinds]
    assert patch_layouts and all(lay.grid("patch") == (6, 8) for lay in patch_layouts)
    assert tuple(trace.cnn_features[-1].shape[-2:]) == (6, 8)


@pytest.mark.parametrize("arch,size", CASES)
def test_traced_logits_match_plain(arch: str, size: str) -> None:
    model = fresh(arch, size).eval()
    if arch == "layerwise":
        open_gates(model)  # otherwise the cross-attention path adds exactly zero
    x = images(size, OTHER_INPUT[size])
    with torch.inference_mode():
        plain = model(x)
        logits, trace = model(x, trace=True)
    assert isinstance(trace, Trace)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch,size", TRANSFORMER_CASES)
def test_every_attention_row_is_a_distribution(arch: str, size: str) -> None:
    model = shared(arch, size)
    config = model.config
    x = images(size, OTHER_INPUT[size])
    _, trace = traced(model, x)
    expected_layers = 2 * config.depth + config.fusion_depth if arch == "late" else config.depth
    assert len(trace.attention) == expected_layers
    for name, weights in trace.attention.items():
        n = trace.layouts[name].num_tokens
        assert weights.shape == (len(x), config.num_heads, n, n), name
        assert (weights >= 0).all(), name
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5, rtol=0)
        assert trace.tokens[name].shape == (len(x), n, config.embed_dim), name
    if arch == "layerwise":
        assert list(trace.cross_attention) == [f"cross_blocks.{i}" for i in range(config.depth)]
        for name, cross in trace.cross_attention.items():
            shape = (len(x), config.num_heads, cross.query_layout.num_tokens, cross.key_layout.num_tokens)
            assert cross.weights.shape == shape, name
            assert (cross.weights >= 0).all(), name
            torch.testing.assert_close(cross.weights.sum(-1), torch.ones(shape[:-1]), atol=1e-5, rtol=0)
    else:
        assert trace.cross_attention == {}


@pytest.mark.parametrize("arch,size", CASES)
def test_layout_counts_match_the_grids(arch: str, size: str) -> None:
    model = shared(arch, size)
    px = OTHER_INPUT[size]
    _, trace = traced(model, images(size, px, batch=1))
    patch_grid = (px // model.config.patch_size,) * 2

    for name in [*trace.layouts, *trace.cross_attention]:  # trace keys name real submodules (CAM targets)
        model.get_submodule(name)

    if arch != "vit":
        trunk = model.trunk
        assert [f.shape[1] for f in trace.cnn_features] == list(trunk.channels)
        assert [tuple(f.shape[-2:]) for f in trace.cnn_features] == trunk.grids((px, px))
        cnn_grid = tuple(trace.cnn_features[-1].shape[-2:])
    else:
        assert trace.cnn_features == []

    layouts = trace.layouts
    if arch == "cnn":
        assert layouts == {} and trace.attention == {}
    elif arch in ("vit", "layerwise"):
        for layout in layouts.values():
            assert layout.kinds == ("cls", "patch")
            assert layout.count("cls") == 1 and layout.grid("patch") == patch_grid
            assert layout.num_tokens == 1 + patch_grid[0] * patch_grid[1]
    elif arch == "early":
        for layout in layouts.values():
            assert layout.kinds == ("cls", "cnn", "patch")
            assert layout.grid("cnn") == cnn_grid and layout.grid("patch") == patch_grid
            assert layout.num_tokens == 1 + math.prod(cnn_grid) + math.prod(patch_grid)
    elif arch == "late":
        streams = {prefix: [lay for n, lay in layouts.items() if n.startswith(prefix + ".")]
                   for prefix in ("cnn_blocks", "patch_blocks", "fusion_blocks")}
        depth, fusion_depth = model.config.depth, model.config.fusion_depth
        assert [len(v) for v in streams.values()] == [depth, depth, fusion_depth]
        assert all(lay.kinds == ("cls", "cnn") and lay.grid("cnn") == cnn_grid for lay in streams["cnn_blocks"])
        assert all(lay.kinds == ("cls", "patch") and lay.grid("patch") == patch_grid for lay in streams["patch_blocks"])
        for layout in streams["fusion_blocks"]:  # [cls; cnn_cls; CNN; patch_cls; patch]
            assert [s.kind for s in layout.spans] == ["cls", "cls", "cnn", "cls", "patch"]
            assert layout.grid("cnn") == cnn_grid and layout.grid("patch") == patch_grid
            assert layout.num_tokens == 1 + (1 + math.prod(cnn_grid)) + (1 + math.prod(patch_grid))

    if arch == "layerwise":  # first half of the blocks read the shallower stage, the second half the last
        depth = model.config.depth
        for i in range(depth):
            key = trace.cross_attention[f"cross_blocks.{i}"].key_layout
            stage = trace.cnn_features[0 if i < depth // 2 else -1]
            assert key.kinds == ("cnn",) and key.grid("cnn") == tuple(stage.shape[-2:]), i


# --------------------------------------------------------------------------- gradients


def _backward(model: TokenFusionModel, size: str) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    x = images(size, 64, batch=2)  # tiny at the size it is built for, small at 64 px to keep it fast
    F.cross_entropy(model(x), torch.tensor([0, 1])).backward()


@pytest.mark.parametrize("arch,size", [c for c in FUSION_CASES if c.values[0] != "layerwise"])
def test_gradients_reach_trunk_and_patch_embedding(arch: str, size: str) -> None:
    model = fresh(arch, size)
    _backward(model, size)
    assert grad_sum(model.trunk.parameters()) > 0
    assert grad_sum(model.cnn_tokens.parameters()) > 0
    assert grad_sum(model.patch_tokens.parameters()) > 0


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_layerwise_gates_shut_the_trunk_out_at_init_then_let_it_in(size: str) -> None:
    model = fresh("layerwise", size)
    _backward(model, size)
    # tanh(0) = 0: at initialisation no gradient reaches the CNN side, by design ...
    assert grad_sum(model.trunk.parameters()) == 0.0
    assert grad_sum(model.cnn_tokens.parameters()) == 0.0
    # ... but every gate gets one, so training can open it.
    assert all(float(b.gate.grad.abs()) > 0 for b in model.cross_blocks)
    assert grad_sum(model.patch_tokens.parameters()) > 0

    open_gates(model, 0.5)
    _backward(model, size)
    assert grad_sum(model.trunk.parameters()) > 0
    assert grad_sum(model.cnn_tokens.parameters()) > 0
    assert grad_sum(model.patch_tokens.parameters()) > 0


# --------------------------------------------------------------------------- layerwise = ViT at init


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_layerwise_at_init_computes_its_patch_stream_alone(size: str) -> None:
    layerwise = shared("layerwise", size)
    vit = create("vit", size).eval()
    state = layerwise.state_dict()
    result = vit.load_state_dict(state, strict=False)
    cnn_side = ("trunk.", "cnn_tokens.", "cross_blocks.")
    assert result.missing_keys == []
    assert sorted(result.unexpected_keys) == sorted(k for k in state if k.startswith(cnn_side))
    assert {k.split(".")[0] for k in result.unexpected_keys} == {"trunk", "cnn_tokens", "cross_blocks"}
    x = images(size, OTHER_INPUT[size] if size == "small" else None)
    with torch.inference_mode():
        torch.testing.assert_close(vit(x), layerwise(x), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- fusion weights


@pytest.mark.parametrize("arch,size", SHARE_CASES)
def test_attention_shares_over_token_kinds_sum_to_one(arch: str, size: str) -> None:
    model = shared(arch, size)
    x = images(size, OTHER_INPUT[size])
    _, trace = traced(model, x)
    fusion = fusion_weights_of(trace)
    mixed = "blocks." if arch == "early" else "fusion_blocks."
    assert fusion.layers == [n for n in trace.layouts if n.startswith(mixed)]
    shape = (len(x), len(fusion.layers), model.config.num_heads)
    for shares in (fusion.cls_share, fusion.mean_share):
        assert set(shares) == {"cls", "cnn", "patch"}
        for share in shares.values():
            assert share.shape == shape and (share >= 0).all() and (share <= 1 + 1e-6).all()
        torch.testing.assert_close(sum(shares.values()), torch.ones(shape), atol=1e-5, rtol=0)
    # the class token's share is the attention mass its row puts on that kind
    name = fusion.layers[-1]
    row = trace.attention[name][:, :, 0]  # (B, heads, N)
    on_cnn = row[..., trace.layouts[name].mask("cnn")].sum(-1)
    torch.testing.assert_close(fusion.cls_share["cnn"][:, -1], on_cnn)
    assert fusion.gates is None and fusion.update_ratio is None


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_layerwise_fusion_reports_closed_gates_at_init(size: str) -> None:
    model = shared("layerwise", size)
    x = images(size, OTHER_INPUT[size])
    _, trace = traced(model, x)
    fusion = fusion_weights_of(trace)
    depth = model.config.depth
    assert fusion.layers == [] and fusion.cls_share == {}
    assert torch.equal(fusion.gates, torch.zeros(depth))
    assert torch.equal(fusion.update_ratio, torch.zeros(len(x), depth))


def test_layerwise_fusion_reports_open_gates() -> None:
    model = create("layerwise", "tiny").eval()
    raw = [0.25 * (i + 1) for i in range(model.config.depth)]
    with torch.no_grad():
        for block, g in zip(model.cross_blocks, raw):
            block.gate.fill_(g)
    _, trace = traced(model, images("tiny"))
    fusion = fusion_weights_of(trace)
    torch.testing.assert_close(fusion.gates, torch.tanh(torch.tensor(raw)))
    assert fusion.update_ratio.shape == (2, model.config.depth) and (fusion.update_ratio > 0).all()


# --------------------------------------------------------------------------- TokenLayout


def test_layout_build_spans_counts_and_kinds() -> None:
    layout = TokenLayout.build(("cls", 1), ("cnn", (2, 3)), ("patch", (4, 4)))
    assert [(s.kind, s.start, s.length, s.grid) for s in layout.spans] == [
        ("cls", 0, 1, None), ("cnn", 1, 6, (2, 3)), ("patch", 7, 16, (4, 4)),
    ]
    assert layout.num_tokens == 23 and layout.kinds == ("cls", "cnn", "patch")
    assert (layout.count("cls"), layout.count("cnn"), layout.count("patch")) == (1, 6, 16)
    assert layout.grid("cnn") == (2, 3) and layout.grid("patch") == (4, 4)


def test_layout_masks_partition_the_sequence() -> None:
    layout = TokenLayout.build(("cls", 1), ("cnn", (2, 3)), ("patch", (2, 2)))
    masks = {k: layout.mask(k) for k in layout.kinds}
    assert masks["cls"].nonzero().flatten().tolist() == [0]
    assert masks["cnn"].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]
    assert masks["patch"].nonzero().flatten().tolist() == [7, 8, 9, 10]
    assert torch.equal(sum(m.int() for m in masks.values()), torch.ones(layout.num_tokens, dtype=torch.int))


def test_layout_concatenation_shifts_the_second_part() -> None:
    layout = TokenLayout.build(("cls", 1)) + TokenLayout.build(("cls", 1), ("cnn", (2, 2))) \
        + TokenLayout.build(("cls", 1), ("patch", (3, 3)))
    assert [(s.kind, s.start) for s in layout.spans] == [("cls", 0), ("cls", 1), ("cnn", 2), ("cls", 6), ("patch", 7)]
    assert layout.num_tokens == 16 and layout.count("cls") == 3
    assert layout.mask("cls").nonzero().flatten().tolist() == [0, 1, 6]


def test_layout_to_grid_puts_a_token_on_its_cell() -> None:
    layout = TokenLayout.build(("cls", 1), ("cnn", (2, 3)), ("patch", (3, 4)))
    r, c = 1, 2  # patch cell at row 1, column 2 -> token 1 + 6 + (1 * 4 + 2)
    index = layout.grid_span("patch").start + r * 4 + c

    tokens = torch.zeros(2, layout.num_tokens, 5)  # (B, N, C)
    tokens[1, index] = torch.arange(1.0, 6.0)
    grid = layout.to_grid(tokens, "patch")
    assert grid.shape == (2, 5, 3, 4)
    assert torch.equal(grid[1, :, r, c], torch.arange(1.0, 6.0))
    assert grid.abs().sum() == grid[1, :, r, c].abs().sum()  # nothing else is set

    scores = torch.zeros(2, 4, layout.num_tokens)  # (..., N): e.g. an attention row per head
    scores[0, 3, index] = 7.0
    grid = layout.to_grid(scores, "patch")
    assert grid.shape == (2, 4, 3, 4)
    assert grid[0, 3, r, c] == 7.0 and grid.sum() == 7.0

    cnn = layout.to_grid(torch.arange(float(layout.num_tokens)), "cnn")  # (N,) -> (h, w)
    assert cnn.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_layout_errors_name_the_kinds() -> None:
    with pytest.raises(ValueError, match=r"Unknown token kind 'pixel'.*\['cls', 'cnn', 'patch'\]"):
        TokenLayout.build(("pixel", (2, 2)))
    layout = TokenLayout.build(("cls", 1), ("patch", (2, 2)))
    with pytest.raises(KeyError, match=r"no 'cnn' token grid.*\['cls', 'patch'\]"):
        layout.to_grid(torch.zeros(5), "cnn")


# --------------------------------------------------------------------------- create and counts


def test_create_rejects_an_unknown_architecture_listing_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        create("hybrid", "tiny")
    message = str(info.value)
    assert "'hybrid'" in message and all(repr(a) in message for a in ARCHITECTURES)


def test_create_rejects_an_unknown_size_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown size 'huge'.*\['tiny', 'small', 'base'\]"):
        create("vit", "huge")


def test_create_rejects_an_unknown_option_listing_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        create("vit", "tiny", depht=2)
    message = str(info.value)
    assert "'depht'" in message and "'depth'" in message and "'num_classes'" in message
    assert "'arch'" not in message  # not an option: it is the first argument


def test_create_rejects_heads_that_do_not_divide_the_width() -> None:
    with pytest.raises(ValueError, match="embed_dim 64 is not divisible by num_heads 5"):
        create("vit", "tiny", num_heads=5)


def test_create_rejects_resnet_weights_without_a_resnet_trunk(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet50.pth")
    with pytest.raises(ValueError, match="fits only a ResNet-50 trunk; early/tiny has 'local'"):
        create("early", "tiny", trunk_weights=tmp_path / "resnet50.pth")


def test_create_rejects_a_sincos_width_not_divisible_by_four() -> None:
    with pytest.raises(ValueError, match="embed_dim 66 is not divisible by 4"):
        create("vit", "tiny", pos_embed="sincos", embed_dim=66, num_heads=2)
    with pytest.raises(ValueError, match=r"pos_embed is 'rope', expected one of \['learned', 'sincos'\]"):
        create("vit", "tiny", pos_embed="rope")


def test_xavier_initialises_every_linear_layer_at_its_own_scale() -> None:
    """At width 64 the default std 0.02 starts every layer several times smaller than its fan-in calls for;
    ``weight_init="xavier"`` scales each to its fan-in and fan-out."""
    layers = [m for m in create("vit", "tiny", weight_init="xavier").modules() if isinstance(m, nn.Linear)]
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.1)
        assert not layer.bias.any()
    default = [m for m in create("vit", "tiny").modules() if isinstance(m, nn.Linear)]
    assert all(m.weight.std().item() == pytest.approx(0.02, rel=0.15) for m in default)
    with pytest.raises(ValueError, match=r"weight_init is 'he', expected one of \['trunc_normal', 'xavier'\]"):
        create("vit", "tiny", weight_init="he")


@pytest.mark.parametrize("arch", ["vit", *FUSION])
def test_sincos_position_embeddings_are_fixed_and_tell_every_place_apart(arch: str) -> None:
    model = create(arch, "tiny", pos_embed="sincos")
    embeddings = [m for m in model.modules() if isinstance(m, PositionEmbedding2d)]
    assert embeddings and all(e.kind == "sincos" for e in embeddings)
    assert not any("pos_embed" in name for name, _ in model.named_parameters())  # nothing to learn
    assert all(f"{name}.weight" in model.state_dict() for name, m in model.named_modules() if m in embeddings)
    table = embeddings[0](embeddings[0].grid)[0]  # (h*w, D)
    assert torch.cdist(table, table).add(torch.eye(len(table)) * 1e3).min() > 0.1  # no two places alike
    # A grid twice as fine puts its cells at the same places of the image: the cell over the same
    # spot is closest to the coarse grid's embedding there.
    (h, w), fine = embeddings[0].grid, embeddings[0]((2 * embeddings[0].grid[0], 2 * embeddings[0].grid[1]))[0]
    nearest = torch.cdist(table, fine).argmin(1)
    rows, cols = nearest // (2 * w), nearest % (2 * w)
    cells = torch.arange(h * w)
    assert ((rows // 2 == cells // w) & (cols // 2 == cells % w)).all()
    with torch.inference_mode():
        assert model.eval()(images("tiny")).shape == (2, 12)


def test_create_applies_overrides() -> None:
    model = create("early", "tiny", num_classes=5, depth=2, embed_dim=32)
    assert (model.config.num_classes, model.config.depth, model.config.embed_dim) == (5, 2, 32)
    assert len(model.blocks) == 2
    with torch.inference_mode():
        assert model.eval()(images("tiny")).shape == (2, 5)


def test_parameter_and_flop_counts_are_sane() -> None:
    flops = {a: count_flops(shared(a, "tiny")) for a in ARCHITECTURES}
    params = {a: count_parameters(shared(a, "tiny")) for a in ARCHITECTURES}
    assert all(f > 0 for f in flops.values()) and all(p > 0 for p in params.values())
    assert flops["vit"] < flops["early"] and params["vit"] < params["early"]
    assert flops["cnn"] < flops["early"] and params["cnn"] < params["early"]
    model = create("early", "tiny")  # training mode
    assert count_flops(model, img_size=96) > count_flops(model)
    assert model.training, "count_flops must leave the model in the mode it found it"


def test_vit_small_costs_what_torchvision_vit_s16_costs() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.vision_transformer import VisionTransformer

    reference = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6,
                                  hidden_dim=384, mlp_dim=1536).eval()
    # the counter only sees attention matmuls on the math path (no fused MHA, no fused SDPA)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            reference(torch.zeros(1, 3, 224, 224))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    assert count_flops(create("vit", "small")) == counter.get_total_flops()


def test_listing_command_prints_every_tiny_model() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokenfusion.models", "--sizes", "tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # see tests/conftest.py
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert [row[0] for row in rows] == list(ARCHITECTURES)
    for arch, size, px, params, gflops in rows:
        assert (size, px) == ("tiny", "64") and float(params) > 0 and float(gflops) > 0, arch
