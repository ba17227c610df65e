"""Where tokens sit: measured receptive-field centres, checked token by token and against the
convolution arithmetic worked out by hand."""
from __future__ import annotations

import pytest
import torch

from tokenfusion.models import create
from tokenfusion.models.geometry import GeometryError, TokenGeometry, _fit, supports, token_geometry


def _window(model, module: str, cell: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) inclusive of the pixels moving one token: one plain backward,
    written apart from the library's measurement."""
    captured = []
    handle = model.get_submodule(module).register_forward_hook(lambda m, i, out: captured.append(out))
    image = torch.randn(1, 3, size, size, requires_grad=True)
    model.eval()
    try:
        model(image)
    finally:
        handle.remove()
    tokens, grid = captured[0]
    tokens[0, cell[0] * grid[1] + cell[1]].square().sum().backward()
    moved = image.grad[0].abs().sum(0) > 0
    rows, cols = moved.any(1).nonzero().flatten(), moved.any(0).nonzero().flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


@pytest.mark.parametrize("arch, module, offset, stride", [
    # LocalTrunk: stem 3x3/2 pad 1 centres output i on pixel 2i; BasicBlock 3x3/2 pad 1 then 3x3/1: stage1
    # token k sees pixels 4k-7..4k+7 (centre 4k + 0.5); stage2's 2x2/2 conv joins stage1 tokens 2m and 2m+1:
    # pixels 8m-7..8m+11, centre 8m + 2.5, not the cell centre 8m + 4
    ("early", "cnn_tokens", 2.5, 8.0),
    ("layerwise", "cnn_tokens.0", 0.5, 4.0),
    ("layerwise", "cnn_tokens.1", 2.5, 8.0),
    ("early", "patch_tokens", 4.0, 8.0),  # the patch's centre, (i + 0.5) * 8
])
def test_centres_follow_the_convolution_arithmetic(arch: str, module: str, offset: float, stride: float) -> None:
    geometry = token_geometry(create(arch, "tiny"), module)
    assert geometry.offset == (offset, offset) and geometry.stride == (stride, stride)
    centres = geometry.centres((2, 3))
    assert centres.tolist() == [[offset + stride * i, offset + stride * j] for i in range(2) for j in range(3)]


def test_cnn_windows_are_the_declared_receptive_fields() -> None:
    model = create("layerwise", "tiny")
    assert [token_geometry(model, f"cnn_tokens.{i}").extent[0] for i in range(2)] == list(model.trunk.receptive_fields)
    assert token_geometry(model, "patch_tokens").extent == (8, 8)


@pytest.mark.parametrize("arch, module", [("early", "cnn_tokens"), ("layerwise", "cnn_tokens.0"),
                                          ("late", "patch_tokens")])
def test_every_token_sees_its_window_clipped_to_the_image(arch: str, module: str) -> None:
    model = create(arch, "tiny")
    geometry = token_geometry(model, module)
    size = model.config.img_size
    grid, boxes = supports(model, module, (size, size), repeats=1)  # every token, one backward
    assert len(boxes) == grid[0] * grid[1] > 1
    for (i, j), box in boxes.items():
        (top, bottom), (left, right) = geometry.window(0, i), geometry.window(1, j)
        assert box == (max(top, 0), max(left, 0), min(bottom, size) - 1, min(right, size) - 1), (i, j)
    corner, middle = (0, 0), (grid[0] // 2, grid[1] // 2)
    for cell in (corner, middle):  # and a plain backward agrees
        assert _window(model, module, cell, size) == boxes[cell]


def test_windows_larger_than_the_middle_of_the_image_are_measured_on_a_larger_input() -> None:
    # the SynthShapes v1 trunk at 48 px: 39-px windows every 8 px, so only the middle token's fits
    model = create("early", "tiny", trunk="tiny", img_size=48)
    geometry = token_geometry(model, "cnn_tokens")
    assert (geometry.offset, geometry.stride, geometry.extent) == ((0.5, 0.5), (8.0, 8.0), (39, 39))
    grid, boxes = supports(model, "cnn_tokens", (48, 48))
    assert boxes[(0, 0)] == (0, 0, 19, 19)  # pixels -19..19, cut at 0


def test_measured_once_per_model_leaving_mode_and_gradients_alone() -> None:
    model = create("early", "tiny").train()
    first = token_geometry(model, "cnn_tokens")
    assert token_geometry(model, "cnn_tokens") is first
    assert model.training and all(p.grad is None for p in model.parameters())
    assert token_geometry(create("early", "tiny"), "cnn_tokens") == first


def test_only_declared_token_modules_are_measured() -> None:
    with pytest.raises(KeyError, match="not a declared token module"):
        token_geometry(create("early", "tiny"), "trunk.stage2")


def test_irregular_windows_are_refused() -> None:
    boxes = {(3, 3): (10, 10, 20, 20), (4, 4): (18, 18, 28, 28), (5, 5): (27, 27, 38, 38)}  # 11 px, then 12
    with pytest.raises(GeometryError, match="equal windows"):
        _fit("m", "cnn", (64, 64), boxes)
    regular = _fit("m", "cnn", (64, 64), {(3, 3): (10, 10, 20, 20), (4, 4): (18, 18, 28, 28)})
    assert regular == TokenGeometry("m", "cnn", (-8.5, -8.5), (8.0, 8.0), (11, 11))


def test_the_structure_names_the_one_token_module_of_a_kind() -> None:
    assert create("early", "tiny").structure.token_module("cnn") == "cnn_tokens"
    layerwise = create("layerwise", "tiny").structure
    assert layerwise.token_module("patch") == "patch_tokens"
    with pytest.raises(KeyError, match="2 modules"):
        layerwise.token_module("cnn")
