"""SynthShapes: a procedurally generated shape x texture teaching dataset.

Every image holds one object whose class is the pair (global cue = shape,
local cue = texture): 4 shapes x 3 textures = 12 classes. The object sits on a
cluttered background (smooth colour gradient, low-amplitude noise) together
with 2-4 distractor fragments: small textured blobs (texture without shape) and
thin shape outlines (shape without texture), so that neither a texture-only nor
a shape-only reader is ideal.

Class order: ``label = texture_index * len(SHAPES) + shape_index``. With
``SHAPES`` and ``TEXTURES`` in alphabetical order this makes ``CLASS_NAMES``
sorted, so the indices equal those ``torchvision.datasets.ImageFolder`` assigns
to an exported copy. Classes are balanced: sample ``index`` has label
``index % 12``.

Every sample is a pure function of ``(seed, index, image_size)``: all
randomness comes from ``np.random.default_rng([seed, index])``.
"""

from __future__ import annotations

import argparse
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

__all__ = [
    "SHAPES",
    "TEXTURES",
    "CLASS_NAMES",
    "VAL_SEED_OFFSET",
    "SynthSample",
    "render_sample",
    "SynthShapes",
    "export_imagefolder",
]

SHAPES: tuple[str, ...] = ("circle", "cross", "square", "triangle")
TEXTURES: tuple[str, ...] = ("checker", "dots", "stripes")
_ADJECTIVES = {"checker": "checkered", "dots": "dotted", "stripes": "striped"}
CLASS_NAMES: list[str] = [f"{_ADJECTIVES[t]} {s}" for t in TEXTURES for s in SHAPES]

#: ``export_imagefolder`` renders the val split with seed ``(seed + VAL_SEED_OFFSET) % 2**32``.
VAL_SEED_OFFSET = 1_000_003

_MIN_IMAGE_SIZE = 32
_MAX_SEED = 2**32
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_NOISE_AMPLITUDE = 0.06  # peak-to-peak, on a [0, 1] intensity scale
_MIN_CONTRAST = 0.35  # luminance difference between the two texture colours
_SQRT3_2 = math.sqrt(3) / 2


@dataclass(frozen=True)
class SynthSample:
    """One generated image.

    Attributes:
        image: (H, W, 3) uint8 RGB image.
        mask: (H, W) bool mask of the object's pixels.
        label: class index into ``CLASS_NAMES``.
        shape: object shape, one of ``SHAPES``.
        texture: object texture, one of ``TEXTURES``.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    shape: str
    texture: str


def _check_int(name: str, value: int, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to ``shape`` of circumradius ~1, in the units of (u, v)."""
    if shape == "circle":
        return np.sqrt(u * u + v * v) - 0.88
    au, av = np.abs(u), np.abs(v)
    if shape == "square":
        return np.maximum(au, av) - 0.7
    if shape == "cross":
        return np.minimum(np.maximum(au - 0.95, av - 0.3), np.maximum(au - 0.3, av - 0.95))
    # Equilateral triangle, centroid at the origin, apex towards -v, inradius 0.5.
    return np.maximum(v, _SQRT3_2 * au - 0.5 * v) - 0.5


def _texture(kind: str, u: np.ndarray, v: np.ndarray, period: float, phase: np.ndarray) -> np.ndarray:
    """Anti-aliased two-colour texture in [0, 1], for pixel coordinates (u, v) in the texture frame."""
    if kind == "dots":
        a = (u / period + phase[0]) % 1.0 - 0.5
        b = (v / period + phase[1]) % 1.0 - 0.5
        t = 2.0 * (0.3 * period - period * np.sqrt(a * a + b * b))
    else:
        w, gain = 2 * math.pi / period, period / math.pi  # gain: edge ramp of ~1 px
        t = np.sin(w * u + 2 * math.pi * phase[0]) * gain
        if kind == "checker":
            np.clip(t, -1.0, 1.0, out=t)
            t *= np.clip(np.sin(w * v + 2 * math.pi * phase[1]) * gain, -1.0, 1.0)
    np.clip(t, -1.0, 1.0, out=t)
    t *= 0.5
    t += 0.5
    return t


def _window(cx: float, cy: float, radius: float, size: int) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Image slices covering a disc, with pixel-centre offsets (h,) and (w,) from its centre."""
    x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, size)
    y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, size)
    if x0 >= x1 or y0 >= y1:
        return None
    dy = np.arange(y0, y1, dtype=np.float32) + (0.5 - cy)
    dx = np.arange(x0, x1, dtype=np.float32) + (0.5 - cx)
    return slice(y0, y1), slice(x0, x1), dy, dx


def _rotate(dy: np.ndarray, dx: np.ndarray, angle: float, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) coordinates of the grid ``dy x dx`` in a frame rotated by ``angle`` and divided by ``scale``."""
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    return np.add.outer(dy * s, dx * c), np.add.outer(dy * c, dx * -s)


def _contrasting(rng: np.random.Generator, reference: np.ndarray, min_contrast: float) -> np.ndarray:
    """Random RGB colour whose luminance differs from ``reference``'s by at least ``min_contrast``."""
    candidates = rng.random((16, 3), dtype=np.float32)
    ref = float(reference @ _LUMA)
    ok = np.abs(candidates @ _LUMA - ref) >= min_contrast
    if ok.any():
        return candidates[ok.argmax()]
    return np.full(3, 0.0 if ref > 0.5 else 1.0, dtype=np.float32)


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend ``colour`` ((h, w, 3) or (3,)) onto the (h, w, 3) view ``canvas`` in place."""
    canvas += alpha[..., None] * (colour - canvas)


def _draw_textured(
    rng: np.random.Generator,
    region: np.ndarray,
    sdf: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    texture: str,
    image_size: int,
) -> None:
    """Fill ``sdf <= 0`` (pixel units) of the (h, w, 3) view ``region`` with ``texture`` in two contrasting colours."""
    angle, period, *phase = rng.random(4)
    period = image_size * (0.105 + 0.04 * period)  # 5-7 px at 48 px
    u, v = _rotate(dy, dx, math.pi * angle)
    t = _texture(texture, u, v, period, phase)
    c0 = rng.random(3, dtype=np.float32)
    c1 = _contrasting(rng, c0, _MIN_CONTRAST)
    alpha = np.clip(0.5 - sdf, 0.0, 1.0)
    _paint(region, alpha, c0 + t[..., None] * (c1 - c0))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 bilinear gradient between 4 random corner colours, plus uniform noise."""
    corners = rng.uniform(0.1, 0.9, (2, 2, 3)).astype(np.float32)
    ramp = (np.arange(size, dtype=np.float32) + 0.5) / size
    top = corners[0, 0] + ramp[:, None] * (corners[0, 1] - corners[0, 0])
    bottom = corners[1, 0] + ramp[:, None] * (corners[1, 1] - corners[1, 0])
    canvas = top + ramp[:, None, None] * (bottom - top)
    noise = rng.random((size, size, 1), dtype=np.float32)
    noise -= 0.5
    noise *= _NOISE_AMPLITUDE
    canvas += noise
    return canvas


def _draw_blob(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, radius: float) -> None:
    """Small textured blob: union of 3 overlapping discs filled with a random texture."""
    window = _window(cx, cy, radius, canvas.shape[0])
    if window is None:
        return
    ys, xs, dy, dx = window
    params = rng.random((3, 3), dtype=np.float32)
    offsets = (params[:, :2] - 0.5) * (0.7 * radius)
    radii = (0.3 + 0.2 * params[:, 2]) * radius  # the union stays within ``radius``
    sdf = None
    for (ox, oy), r in zip(offsets, radii):
        du, dv = dx - ox, dy - oy
        d = np.sqrt(np.add.outer(dv * dv, du * du)) - r
        sdf = d if sdf is None else np.minimum(sdf, d)
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    _draw_textured(rng, canvas[ys, xs], sdf, dy, dx, texture, canvas.shape[0])


def _draw_outline(rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, radius: float) -> None:
    """Thin untextured outline of a random shape."""
    window = _window(cx, cy, radius, canvas.shape[0])
    if window is None:
        return
    ys, xs, dy, dx = window
    shape = SHAPES[rng.integers(len(SHAPES))]
    u, v = _rotate(dy, dx, 2 * math.pi * rng.random(), radius)
    half_width = max(0.5, canvas.shape[0] / 80)
    alpha = np.clip(half_width + 0.5 - np.abs(_shape_sdf(shape, u, v) * radius), 0.0, 1.0)
    region = canvas[ys, xs]
    colour = _contrasting(rng, region.mean(axis=(0, 1)), 0.3)
    _paint(region, alpha, colour)


def render_sample(seed: int, index: int, image_size: int = 48) -> SynthSample:
    """Render sample ``index`` of the stream ``seed``.

    Args:
        seed: stream seed, in [0, 2**32).
        index: sample index, >= 0. Its label is ``index % len(CLASS_NAMES)``.
        image_size: side of the square image in pixels, >= 32.

    Returns:
        The sample: (H, W, 3) uint8 image, (H, W) bool object mask, label, shape and texture.
    """
    seed = _check_int("seed", seed, 0, _MAX_SEED)
    index = _check_int("index", index, 0)
    size = _check_int("image_size", image_size, _MIN_IMAGE_SIZE)
    rng = np.random.default_rng([seed, index])
    label = index % len(CLASS_NAMES)
    texture_index, shape_index = divmod(label, len(SHAPES))
    shape, texture = SHAPES[shape_index], TEXTURES[texture_index]

    # Object: circumradius 20-35% of the side, fully inside the image.
    size_u, x_u, y_u, angle_u = rng.random(4)
    radius = size * (0.2 + 0.15 * size_u)
    cx = radius + 1 + x_u * (size - 2 * radius - 2)
    cy = radius + 1 + y_u * (size - 2 * radius - 2)

    canvas = _background(rng, size)

    # Distractors: a blob, an outline, then 0-2 of either, centred away from the object.
    kinds = [0, 1] + list(rng.integers(2, size=rng.integers(3)))
    for kind in kinds:
        d_radius = size * (0.11 + 0.05 * rng.random() if kind == 0 else 0.12 + 0.13 * rng.random())
        centres = rng.random((16, 2)) * size
        far = np.hypot(centres[:, 0] - cx, centres[:, 1] - cy) >= radius + 0.8 * d_radius
        if far.any():
            x, y = centres[far.argmax()]
            (_draw_blob if kind == 0 else _draw_outline)(rng, canvas, x, y, d_radius)

    ys, xs, dy, dx = _window(cx, cy, radius, size)
    u, v = _rotate(dy, dx, 2 * math.pi * angle_u, radius)
    sdf = _shape_sdf(shape, u, v)
    sdf *= radius
    _draw_textured(rng, canvas[ys, xs], sdf, dy, dx, texture, size)
    mask = np.zeros((size, size), dtype=bool)
    mask[ys, xs] = sdf <= 0

    np.clip(canvas, 0.0, 1.0, out=canvas)
    canvas *= 255.0
    canvas += 0.5
    return SynthSample(image=canvas.astype(np.uint8), mask=mask, label=label, shape=shape, texture=texture)


class SynthShapes(torch.utils.data.Dataset):
    """SynthShapes as a map-style dataset of ``num_samples`` images rendered on the fly.

    Item ``i`` is ``render_sample(seed, i, image_size)``; the val split written by
    :func:`export_imagefolder` is ``SynthShapes(num_val, seed=(seed + VAL_SEED_OFFSET) % 2**32)``.

    Args:
        num_samples: number of samples, >= 1.
        image_size: side of the square images in pixels, >= 32.
        seed: stream seed, in [0, 2**32).
        transform: applied to the (3, H, W) float image in [0, 1].
    """

    def __init__(
        self,
        num_samples: int,
        *,
        image_size: int = 48,
        seed: int = 0,
        transform: Callable | None = None,
    ) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.image_size = _check_int("image_size", image_size, _MIN_IMAGE_SIZE)
        self.seed = _check_int("seed", seed, 0, _MAX_SEED)
        self.transform = transform
        self.classes: list[str] = list(CLASS_NAMES)
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, i: int) -> SynthSample:
        """Raw sample ``i`` (image, mask, label, shape, texture); negative indices count from the end."""
        i = operator.index(i)
        if not -self.num_samples <= i < self.num_samples:
            raise IndexError(f"index {i} is out of range for SynthShapes of length {self.num_samples}")
        return render_sample(self.seed, i % self.num_samples, self.image_size)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        """Returns ``(image, label)``: image is a (3, H, W) float32 tensor in [0, 1], then ``transform``-ed."""
        sample = self.sample(i)
        image = F.to_dtype(F.to_image(sample.image), torch.float32, scale=True)
        if self.transform is not None:
            image = self.transform(image)
        return image, sample.label

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, seed={self.seed}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_samples={self.num_samples}, {self.extra_repr()})"


def export_imagefolder(
    root: str | Path,
    *,
    num_train: int,
    num_val: int,
    image_size: int = 48,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write SynthShapes to disk in the ``torchvision.datasets.ImageFolder`` layout.

    Files: ``root/{train,val}/<class name>/<index>.png`` (RGB) and the object masks as
    ``root/{train,val}_masks/<class name>/<index>.png`` (8-bit grey, 0 or 255). The train
    split uses ``seed``, the val split ``(seed + VAL_SEED_OFFSET) % 2**32``. Indices are
    zero-padded to at least 6 digits so files sort in index order. All 12 class folders are
    created even when a split has fewer than 12 samples.

    Returns:
        ``Path(root)``.
    """
    root = Path(root)
    num_train = _check_int("num_train", num_train, 0)
    num_val = _check_int("num_val", num_val, 0)
    image_size = _check_int("image_size", image_size, _MIN_IMAGE_SIZE)
    seed = _check_int("seed", seed, 0, _MAX_SEED)
    splits = [("train", seed, num_train), ("val", (seed + VAL_SEED_OFFSET) % _MAX_SEED, num_val)]
    with tqdm(total=num_train + num_val, disable=not progress, desc="SynthShapes", unit="img") as bar:
        for split, split_seed, count in splits:
            width = max(6, len(str(count - 1)))
            for folder in (split, f"{split}_masks"):
                for name in CLASS_NAMES:
                    (root / folder / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                sample = render_sample(split_seed, index, image_size)
                filename = f"{CLASS_NAMES[sample.label]}/{index:0{width}d}.png"
                Image.fromarray(sample.image).save(root / split / filename)
                Image.fromarray(sample.mask.astype(np.uint8) * 255).save(root / f"{split}_masks" / filename)
                bar.update()
    return root


def _preview(path: str | Path, image_size: int, seed: int) -> Path:
    """Save a labelled grid with one sample per class (rows: textures, columns: shapes)."""
    scale = max(1, 192 // image_size)
    tile, caption = image_size * scale, 14
    grid = Image.new("RGB", (len(SHAPES) * tile, len(TEXTURES) * (tile + caption)), "white")
    draw = ImageDraw.Draw(grid)
    for label, name in enumerate(CLASS_NAMES):
        row, col = divmod(label, len(SHAPES))
        image = Image.fromarray(render_sample(seed, label, image_size).image)
        grid.paste(image.resize((tile, tile), Image.Resampling.NEAREST), (col * tile, row * (tile + caption)))
        draw.text((col * tile + 3, row * (tile + caption) + tile + 1), name, fill="black")
    path = Path(path)
    grid.save(path)
    return path


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tokenfusion.data.synthshapes",
        description="Export SynthShapes as an ImageFolder tree, or save a preview grid of one sample per class.",
    )
    parser.add_argument("--out", type=Path, help="export root directory")
    parser.add_argument("--train", type=int, default=0, help="number of train images")
    parser.add_argument("--val", type=int, default=0, help="number of val images")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels (>= 32)")
    parser.add_argument("--seed", type=int, default=0, help="train seed; val uses seed + VAL_SEED_OFFSET")
    parser.add_argument("--preview", type=Path, help="write a grid of one sample per class to this PNG")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.out is None and args.preview is None:
        parser.error("give --out DIR (with --train/--val) and/or --preview FILE.png")
    try:
        if args.preview is not None:
            print(f"wrote {_preview(args.preview, args.size, args.seed)}")
        if args.out is not None:
            root = export_imagefolder(
                args.out,
                num_train=args.train,
                num_val=args.val,
                image_size=args.size,
                seed=args.seed,
                progress=not args.no_progress,
            )
            print(f"wrote {args.train} train + {args.val} val images to {root}")
    except (TypeError, ValueError) as e:
        parser.error(str(e))


if __name__ == "__main__":
    _main()
