"""Where a model's tokens sit in the input image: the centre of what each one sees, measured.

A token module (``model.structure.token_modules``) lays its tokens on a grid; token ``(i, j)`` of
that grid sees a window of input pixels, its receptive field. For the convolutions here (patch
embedding, padded stride-``s`` trunk convolutions, 1x1 projections) the window moves by a fixed
stride from one token to the next, so its centre is ``offset + stride * i`` along each axis, on any
grid the module makes. The offset is *not* ``stride / 2`` in general: a 3x3 stride-2 convolution
with padding 1 centres output ``i`` on input pixel ``2i`` (coordinate ``2i + 0.5``), not on ``2i + 1``,
and the shifts add up through a trunk (``LocalTrunk``'s stage 2: ``8i + 2.5`` px, not ``8i + 4``).

Rather than recompute that arithmetic from the layers (which would mean knowing every layer type),
:func:`measure_token_geometry` measures it from the model itself, once per model and module
(:func:`token_geometry` caches it): it backpropagates a few tokens near the middle of the grid to
the input (evaluation mode, so that every image is computed alone) and reads the box of pixels with a
non-zero gradient, on random images, several per token, so that no pixel is missed because a ReLU was
off. Coordinates are input pixels with pixel ``k`` spanning ``[k, k + 1)``: a patch token's centre
is its patch's centre, ``(i + 0.5) * p``. A window cut by the image border is measured on a larger
input (the position embeddings follow the input size; the offset and stride of a convolution do
not depend on it), and the measurement checks that every measured box, cut or not, is the
predicted window clipped to the image.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["GeometryError", "TokenGeometry", "measure_token_geometry", "supports", "token_geometries", "token_geometry"]

#: How many times larger than ``config.img_size`` the measuring input may grow for a window to fit.
MAX_SCALE = 8


class GeometryError(ValueError):
    """The tokens of a module do not sit on a regular grid of windows that can be measured."""


@dataclass(frozen=True)
class TokenGeometry:
    """Where the tokens of token module ``module`` (of ``kind``) sit: token ``(i, j)`` of any grid the
    module makes is centred on input pixel coordinates ``(offset[0] + stride[0] * i, offset[1] + stride[1] * j)``
    and sees a window of ``extent`` ``(height, width)`` pixels (its receptive field, the part that
    falls inside the image when measured on a large enough input)."""

    module: str
    kind: str
    offset: tuple[float, float]
    stride: tuple[float, float]
    extent: tuple[int, int]

    def centres(self, grid: tuple[int, int]) -> Tensor:
        """``(h * w, 2)`` float64 centres ``(y, x)`` of a ``grid`` ``(h, w)`` of tokens, row-major (sequence order)."""
        h, w = grid
        ys = self.offset[0] + self.stride[0] * torch.arange(h, dtype=torch.float64)
        xs = self.offset[1] + self.stride[1] * torch.arange(w, dtype=torch.float64)
        return torch.cartesian_prod(ys, xs)

    def window(self, axis: int, index: int) -> tuple[float, float]:
        """``(start, stop)`` in input pixels of the window of token ``index`` along ``axis`` (0 rows, 1 columns)."""
        centre = self.offset[axis] + self.stride[axis] * index
        return centre - self.extent[axis] / 2, centre + self.extent[axis] / 2


class _Stop(Exception):
    """Raised by the hook once the measured module has run: the rest of the forward is not needed."""


def _kind_of(model: nn.Module, module: str) -> str:
    declared = model.structure.token_modules  # type: ignore[attr-defined]
    for kind, modules in declared.items():
        if module in modules:
            return kind
    raise KeyError(f"{module!r} is not a declared token module. Token modules: {dict(declared)}")


Box = tuple[int, int, int, int]  # (top, left, bottom, right) pixel indices, inclusive


def supports(model: nn.Module, module: str, size: tuple[int, int], cells: list[tuple[int, int]] | None = None,
             repeats: int = 2, seed: int = 0) -> tuple[tuple[int, int], dict[tuple[int, int], Box]]:
    """The grid ``module`` makes on an input of ``size`` ``(H, W)``, and for every token ``cell`` of
    ``cells`` (default: every token) the box ``(top, left, bottom, right)`` (pixel indices, inclusive)
    of the input pixels with a non-zero gradient of that token, over ``repeats`` random images;
    ``(-1, -1, -1, -1)`` when no pixel moves it. One forward and one backward of
    ``len(cells) * repeats`` images (two when ``cells`` is None: one to read the grid)."""
    if cells is None:
        grid, _ = supports(model, module, size, [], repeats=0, seed=seed)
        cells = [(i, j) for i in range(grid[0]) for j in range(grid[1])]
    captured: list[tuple[Tensor, tuple[int, int]]] = []

    def hook(_module: nn.Module, _inputs: object, output: tuple[Tensor, tuple[int, int]]) -> None:
        captured.append(output)
        raise _Stop

    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    batch = max(len(cells) * repeats, 1)
    images = torch.randn(batch, 3, *size, generator=generator).to(parameter.device, parameter.dtype)
    images.requires_grad_(True)
    handle = model.get_submodule(module).register_forward_hook(hook)
    was_training = model.training
    try:
        model.eval()  # batch statistics would make every token depend on every pixel
        with torch.enable_grad():
            try:
                model(images)
            except _Stop:
                pass
            if not captured:
                raise GeometryError(f"{module!r} did not run in a forward of the model")
            tokens, grid = captured[0]
            grid = (int(grid[0]), int(grid[1]))
            if not cells:
                return grid, {}
            index = torch.tensor([i * grid[1] + j for i, j in cells for _ in range(repeats)], device=tokens.device)
            picked = tokens[torch.arange(batch, device=tokens.device), index]  # (batch, D)
            weights = torch.randn(picked.shape, generator=generator).to(picked)  # no cancellation by symmetry
            (gradient,) = torch.autograd.grad((picked * weights).sum(), images)
    finally:
        handle.remove()
        model.train(was_training)
    moved = gradient.abs().sum(1).reshape(len(cells), repeats, *size).amax(1) > 0  # (cells, H, W)
    out = {}
    for cell, mask in zip(cells, moved):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        out[cell] = (-1, -1, -1, -1) if len(rows) == 0 else (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
    return grid, out


def _middle(grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Three cells down the diagonal around the middle of ``grid``, inside it."""
    h, w = grid
    cells = [(min(max(h // 2 + d, 0), h - 1), min(max(w // 2 + d, 0), w - 1)) for d in (-1, 0, 1)]
    return list(dict.fromkeys(cells))


def _fit(module: str, kind: str, size: tuple[int, int], boxes: dict[tuple[int, int], Box]
         ) -> TokenGeometry | None:
    """The geometry from boxes of tokens whose windows lie inside the input (None when fewer than two
    distinct rows and columns of such tokens were measured)."""
    offset, stride, extent = [], [], []
    for axis in (0, 1):
        inside = {}
        for cell, box in boxes.items():
            start, stop = box[axis], box[axis + 2]
            if start > 0 and stop < size[axis] - 1:  # not touching the border: not cut
                inside[cell[axis]] = (start, stop + 1)
        if len(inside) < 2:
            return None
        extents = {stop - start for start, stop in inside.values()}
        indices = sorted(inside)
        centres = [(inside[i][0] + inside[i][1]) / 2 for i in indices]
        steps = {(centres[k + 1] - centres[k]) / (indices[k + 1] - indices[k]) for k in range(len(indices) - 1)}
        if len(extents) != 1 or len(steps) != 1:
            raise GeometryError(f"The tokens of {module!r} do not see equal windows at a fixed stride "
                                f"(axis {axis}: windows {[inside[i] for i in indices]} of tokens {indices})")
        stride.append(steps.pop())
        offset.append(centres[0] - stride[-1] * indices[0])
        extent.append(extents.pop())
    return TokenGeometry(module, kind, (offset[0], offset[1]), (stride[0], stride[1]), (extent[0], extent[1]))


def _check(geometry: TokenGeometry, size: tuple[int, int], boxes: dict[tuple[int, int], Box]
           ) -> None:
    """Every measured box is the predicted window clipped to the input."""
    for cell, box in boxes.items():
        for axis in (0, 1):
            start, stop = geometry.window(axis, cell[axis])
            expected = (max(start, 0), min(stop, size[axis]))
            measured = (box[axis], box[axis + 2] + 1)
            if expected != measured:
                raise GeometryError(
                    f"Token {cell} of {geometry.module!r} on a {size[0]}x{size[1]} input sees pixels "
                    f"{measured[0]}-{measured[1]} along axis {axis}, not the {expected[0]:g}-{expected[1]:g} of a "
                    f"window of {geometry.extent[axis]} px centred at {geometry.offset[axis]:g} + "
                    f"{geometry.stride[axis]:g} * i (clipped to the image)")


def measure_token_geometry(model: nn.Module, module: str, *, repeats: int = 2) -> TokenGeometry:
    """Measure where the tokens of the declared token module ``module`` of ``model`` sit (see the module
    docstring): on inputs of ``config.img_size``, then 2, 4... times larger until three tokens in the
    middle of the grid see windows inside the input; each token on ``repeats`` random images, four
    times as many if that is not regular (a pixel every ReLU on its path shut on every image would
    look outside the window). Raises :class:`GeometryError` when the windows are not regular. Leaves
    the model's mode and gradients as they were."""
    try:
        return _measure(model, module, repeats)
    except GeometryError:
        return _measure(model, module, 4 * repeats)


def _measure(model: nn.Module, module: str, repeats: int) -> TokenGeometry:
    kind = _kind_of(model, module)
    base = int(model.config.img_size)  # type: ignore[attr-defined]
    first: tuple[tuple[int, int], dict] | None = None
    scale = 1
    while scale <= MAX_SCALE:
        size = (base * scale, base * scale)
        grid, _ = supports(model, module, size, [], repeats=0)
        _, boxes = supports(model, module, size, _middle(grid), repeats=repeats)
        if first is None:
            first = (size, boxes)
        geometry = _fit(module, kind, size, boxes)
        if geometry is not None:
            _check(geometry, size, boxes)
            _check(geometry, *first)
            return geometry
        scale *= 2
    raise GeometryError(f"The tokens of {module!r} see windows larger than a {MAX_SCALE}x input "
                        f"({MAX_SCALE * base} px): their centres cannot be measured")


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[str, TokenGeometry]] = weakref.WeakKeyDictionary()


def token_geometry(model: nn.Module, module: str) -> TokenGeometry:
    """:func:`measure_token_geometry`, measured once per model object and module."""
    known = _CACHE.setdefault(model, {})
    if module not in known:
        known[module] = measure_token_geometry(model, module)
    return known[module]


def token_geometries(model: nn.Module) -> dict[str, TokenGeometry]:
    """:func:`token_geometry` of every token module ``model.structure`` declares, by module name."""
    declared = model.structure.token_modules  # type: ignore[attr-defined]
    return {module: token_geometry(model, module) for modules in declared.values() for module in modules}
