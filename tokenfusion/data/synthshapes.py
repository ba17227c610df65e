"""SynthShapes: a procedurally generated shape x texture teaching dataset.

Every image holds one object whose class is the pair (global cue = shape,
local cue = texture): 4 shapes x 3 textures = 12 classes, on a cluttered
background (smooth colour gradient, noise) together with distractor fragments
placed where the object leaves room: textured blobs (texture without shape)
and thin shape outlines (shape without texture), so that neither a texture-only
nor a shape-only reader is ideal.

Two versions (:data:`VERSIONS`), each reproducible by name:

- **v2** (the default, 64 px): objects of circumradius 16-30% of the side anywhere in
  the image, so that the image centre lies in the object in about a third of
  the images and no fixed map can localise them; 2-6 distractors, stronger noise.
  ``conflict=True`` renders the cue-conflict split: two decoys as large as the
  object, a blob with another class's texture and a filled untextured silhouette
  of another class's shape (``SynthSample.decoy_label``).
- **v1** (48 px): large objects (circumradius 33-47%) that always cover the
  centre; 2-4 distractors. Kept so that v1 checkpoints evaluate on their data.

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
import functools
import math
import operator
from collections.abc import Callable, Sequence
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
    "HELDOUT_SEED",
    "TRAIN_SEED",
    "VAL_SEED_OFFSET",
    "val_seed",
    "VERSIONS",
    "SYNTHSHAPES_DATA",
    "SynthSample",
    "render_sample",
    "SynthShapes",
    "cue_accuracy",
    "conflict_reliance",
    "export_imagefolder",
]

SHAPES: tuple[str, ...] = ("circle", "cross", "square", "triangle")
TEXTURES: tuple[str, ...] = ("checker", "dots", "stripes")
_ADJECTIVES = {"checker": "checkered", "dots": "dotted", "stripes": "striped"}
CLASS_NAMES: list[str] = [f"{_ADJECTIVES[t]} {s}" for t in TEXTURES for s in SHAPES]

#: The seeds, named once. Training renders ``TRAIN_SEED`` (``python -m train --data-seed``), its
#: validation split ``val_seed(seed)`` (also the val split of :func:`export_imagefolder`);
#: ``HELDOUT_SEED`` is used by neither: held-out accuracy, explanation scores, the app's gallery and
#: the notebooks read it.
TRAIN_SEED = 0
VAL_SEED_OFFSET = 1
HELDOUT_SEED = 12345

_MIN_IMAGE_SIZE = 32
_MAX_SEED = 2**32


def val_seed(seed: int) -> int:
    """The validation seed of training seed ``seed``: ``(seed + VAL_SEED_OFFSET) % 2**32``."""
    return (seed + VAL_SEED_OFFSET) % _MAX_SEED
_LUMA = (0.299, 0.587, 0.114)
_LUMA_VECTOR = np.array(_LUMA, dtype=np.float32)
_NOISE_AMPLITUDE = 0.06  # peak-to-peak, on a [0, 1] intensity scale
_MIN_CONTRAST = 0.35  # luminance difference between the two texture colours
_MIN_DISTANCE = 0.3  # RGB distance of texture colours from the background
_SQRT3_2 = math.sqrt(3) / 2


@dataclass(frozen=True)
class _Version:
    """What differs between SynthShapes versions (radii as fractions of the image side)."""

    object_radius: tuple[float, float]  # circumradius range of the object
    noise: float  # peak-to-peak background noise, on a [0, 1] intensity scale
    period: tuple[float, float]  # texture period: lowest, and span above it
    extra_distractors: int  # at most this many beyond the first blob and outline
    default_size: int
    edge_bias: bool  # object centres drawn towards the sides rather than uniformly
    distractor_radius: tuple[tuple[float, float], tuple[float, float]]  # blobs' range, outlines' range


#: SynthShapes versions by number: 2 is the teaching set, 1 the set the first models trained on.
VERSIONS: dict[int, _Version] = {
    1: _Version(object_radius=(0.33, 0.47), noise=_NOISE_AMPLITUDE, period=(0.105, 0.04), extra_distractors=2,
                default_size=48, edge_bias=False,
                distractor_radius=((0.15, 0.22), (0.12, 0.25))),
    2: _Version(object_radius=(0.18, 0.32), noise=0.06, period=(0.07, 0.03), extra_distractors=2, default_size=64,
                edge_bias=True, distractor_radius=((0.08, 0.14), (0.12, 0.25))),
}


@dataclass(frozen=True)
class SynthSample:
    """One generated image.

    Attributes:
        image: (H, W, 3) uint8 RGB image.
        mask: (H, W) bool mask of the object's pixels.
        label: class index into ``CLASS_NAMES``.
        shape: object shape, one of ``SHAPES``.
        texture: object texture, one of ``TEXTURES``.
        decoy_label: in the cue-conflict split, the class whose shape and texture the decoys carry;
            otherwise None.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    shape: str
    texture: str
    decoy_label: int | None = None
#: The ``--data`` names of the SynthShapes versions (``python -m train``, checkpoints' ``dataset``).
SYNTHSHAPES_DATA: dict[str, int] = {"synthshapes": 2, "synthshapes-v1": 1}


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


def _texture(
    kind: str, dy: np.ndarray, dx: np.ndarray, period: float, angle: float, phase: tuple[float, float]
) -> np.ndarray:
    """Anti-aliased two-colour texture in [0, 1] on the (h, w) grid of pixel offsets ``dy x dx``.

    ``period`` is in pixels, ``angle`` in radians and ``phase`` in periods; edges ramp over ~1 px.
    """
    if kind == "dots":
        u, v = _rotate(dy, dx, angle, period, phase)
        u -= np.rint(u)  # offsets from the nearest dot centre (float % is slow)
        v -= np.rint(v)
        t = np.sqrt(u * u + v * v)
        t -= 0.3  # dot radius, in periods
        t *= -period
    else:
        u, v = _rotate(dy, dx, angle, period / (2 * math.pi), (2 * math.pi * phase[0], 2 * math.pi * phase[1]))
        gain = period / (2 * math.pi)  # the sine's slope at its zeros becomes 1 per px
        t = np.sin(u)
        t *= gain
        if kind == "checker":  # signed distance to the nearer of the two line families
            b = np.sin(v)
            b *= gain
            t = np.copysign(np.minimum(np.abs(t), np.abs(b)), t * b)
    t.clip(-0.5, 0.5, out=t)
    t += 0.5
    return t


@functools.lru_cache(maxsize=8)
def _pixel_centres(size: int) -> np.ndarray:
    """(size,) float32 pixel-centre coordinates 0.5, 1.5, ..., read-only."""
    centres = np.arange(size, dtype=np.float32) + 0.5
    centres.flags.writeable = False
    return centres


def _window(cx: float, cy: float, radius: float, size: int) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Image slices covering a disc, with pixel-centre offsets (h,) and (w,) from its centre."""
    x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, size)
    y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, size)
    if x0 >= x1 or y0 >= y1:
        return None
    centres = _pixel_centres(size)
    return slice(y0, y1), slice(x0, x1), centres[y0:y1] - cy, centres[x0:x1] - cx


def _rotate(
    dy: np.ndarray, dx: np.ndarray, angle: float, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) coordinates (u, v) of the grid ``dy x dx`` in a frame rotated by ``angle``, divided by ``scale``
    and shifted by ``offset``."""
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    return np.add.outer(dy * s + offset[0], dx * c), np.add.outer(dy * c + offset[1], dx * -s)


def _luma(rgb: list[float]) -> float:
    """Luminance of an RGB colour with components in [0, 1]."""
    return _LUMA[0] * rgb[0] + _LUMA[1] * rgb[1] + _LUMA[2] * rgb[2]


def _contrasting(rng: np.random.Generator, reference: float, min_contrast: float) -> np.ndarray:
    """Random (3, 1, 1) RGB colour whose luminance differs from ``reference`` by >= ``min_contrast`` (<= 0.5).

    A random colour is scaled towards white (lighter side) or black (darker side) just enough.
    """
    *rgb, side = rng.random(4).tolist()
    luma = _luma(rgb)
    if reference < min_contrast or (reference <= 1 - min_contrast and side < 0.5):
        target = reference + min_contrast
        if luma < target:
            scale = (1 - target) / (1 - luma)
            rgb = [1 - (1 - c) * scale for c in rgb]
    else:
        target = reference - min_contrast
        if luma > target:
            rgb = [c * target / luma for c in rgb]
    return np.array(rgb, dtype=np.float32).reshape(3, 1, 1)


def _colour_pair(rng: np.random.Generator, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two random (3, 1, 1) texture colours whose luminances differ by >= ``_MIN_CONTRAST``.

    Both also lie >= ``_MIN_DISTANCE`` (RGB Euclidean) from the (3,) ``background`` colour, except in the
    rare case (p ~ 1e-5) where none of the candidates qualifies.
    """
    pairs = rng.random((64, 2, 3), dtype=np.float32)
    ok = np.abs((pairs[:, 0] - pairs[:, 1]) @ _LUMA_VECTOR) >= _MIN_CONTRAST
    ok &= (np.square(pairs - background).sum(axis=-1) >= _MIN_DISTANCE**2).all(axis=-1)
    i = ok.argmax()
    if ok[i]:
        c0, c1 = pairs[i, :, :, None, None]
        return c0, c1
    c0 = pairs[0, 0]
    return c0[:, None, None], _contrasting(rng, _luma(c0.tolist()), _MIN_CONTRAST)


def _paint(region: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend ``colour`` ((3, h, w) or (3, 1, 1)) onto the (3, h, w) view ``region`` in place."""
    region += alpha * (colour - region)


def _draw_textured(
    rng: np.random.Generator,
    region: np.ndarray,
    sdf: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    texture: str,
    image_size: int,
    period_range: tuple[float, float],
) -> None:
    """Fill ``sdf <= 0`` (pixel units) of the (3, h, w) view ``region`` with ``texture``, its period
    ``image_size * (low + span * u)`` for ``period_range = (low, span)``.

    The two texture colours contrast with each other and with the background at the region's centre.
    """
    angle, period, phase_u, phase_v = rng.random(4).tolist()
    period = image_size * (period_range[0] + period_range[1] * period)  # v1: 5-7 px at 48; v2: 4.5-6.4 px at 64
    t = _texture(texture, dy, dx, period, math.pi * angle, (phase_u, phase_v))
    c0, c1 = _colour_pair(rng, region[:, region.shape[1] // 2, region.shape[2] // 2])
    alpha = (0.5 - sdf).clip(0.0, 1.0)
    _paint(region, alpha, c0 + t * (c1 - c0))


@functools.lru_cache(maxsize=8)
def _bilinear_weights(size: int) -> np.ndarray:
    """(size, 2) weights of the two ends of a linear ramp sampled at pixel centres."""
    ramp = _pixel_centres(size) / size
    weights = np.stack([1 - ramp, ramp], axis=1)
    weights.flags.writeable = False
    return weights


def _background(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    """(3, size, size) float32 bilinear gradient between 4 random corner colours, plus uniform grey noise
    of peak-to-peak ``amplitude``."""
    corners = rng.uniform(0.1, 0.9, (3, 2, 2)).astype(np.float32)
    weights = _bilinear_weights(size)
    canvas = weights @ corners @ weights.T
    noise = rng.random((size, size), dtype=np.float32)
    noise -= 0.5
    noise *= amplitude
    canvas += noise
    return canvas


def _draw_blob(
    rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, radius: float, version: _Version,
    texture: str | None = None,
) -> None:
    """Textured blob within ``radius`` of (cx, cy): a union of 3 overlapping discs, textured with
    ``texture`` (default: a random one)."""
    window = _window(cx, cy, radius, canvas.shape[-1])
    if window is None:
        return
    ys, xs, dy, dx = window
    params = rng.random((3, 3), dtype=np.float32)
    offsets = (params[:, :2, None] - 0.5) * (0.7 * radius)  # (3, 2, 1)
    radii = (0.25 + 0.25 * params[:, 2, None, None]) * radius  # the union stays within ``radius``
    du, dv = dx - offsets[:, 0], dy - offsets[:, 1]  # (3, w), (3, h)
    sdf = (np.sqrt(dv[:, :, None] ** 2 + du[:, None, :] ** 2) - radii).min(axis=0)
    texture = TEXTURES[rng.integers(len(TEXTURES))] if texture is None else texture
    _draw_textured(rng, canvas[:, ys, xs], sdf, dy, dx, texture, canvas.shape[-1], version.period)


def _draw_outline(
    rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, radius: float, version: _Version,
) -> None:
    """Thin untextured outline of a random shape of circumradius ``radius``, contrasting with the background."""
    size = canvas.shape[-1]
    half_width = max(0.5, size / 80)
    window = _window(cx, cy, radius + half_width + 1, size)
    if window is None:
        return
    ys, xs, dy, dx = window
    shape = SHAPES[rng.integers(len(SHAPES))]
    u, v = _rotate(dy, dx, 2 * math.pi * rng.random(), radius)
    alpha = (half_width + 0.5 - np.abs(_shape_sdf(shape, u, v) * radius)).clip(0.0, 1.0)
    colour = _contrasting(rng, _luma(canvas[:, min(int(cy), size - 1), min(int(cx), size - 1)].tolist()), 0.3)
    _paint(canvas[:, ys, xs], alpha, colour)


def _draw_silhouette(
    rng: np.random.Generator, canvas: np.ndarray, cx: float, cy: float, radius: float, shape: str,
) -> None:
    """Filled untextured ``shape`` of circumradius ``radius`` at (cx, cy), in one colour contrasting with
    the background."""
    size = canvas.shape[-1]
    ys, xs, dy, dx = _window(cx, cy, radius, size)
    u, v = _rotate(dy, dx, 2 * math.pi * rng.random(), radius)
    alpha = (0.5 - _shape_sdf(shape, u, v) * radius).clip(0.0, 1.0)
    colour = _contrasting(rng, _luma(canvas[:, min(int(cy), size - 1), min(int(cx), size - 1)].tolist()), 0.3)
    _paint(canvas[:, ys, xs], alpha, colour)


_DISTRACTORS = (_draw_blob, _draw_outline)


def _free_centre(
    rng: np.random.Generator, size: int, radius: float, taken: list[tuple[float, float, float]],
) -> tuple[float, float] | None:
    """A centre for a disc of ``radius`` fully inside the image and clear of the discs ``taken``
    ((cx, cy, r) each), the first of 32 random tries; None when none fits."""
    centres = radius + 1 + rng.random((32, 2)) * (size - 2 * radius - 2)
    clear = np.ones(len(centres), dtype=bool)
    for x, y, r in taken:
        clear &= np.hypot(centres[:, 0] - x, centres[:, 1] - y) >= r + radius
    return tuple(centres[clear.argmax()].tolist()) if clear.any() else None


def render_sample(
    seed: int, index: int, image_size: int | None = None, *, version: int = 2, conflict: bool = False,
) -> SynthSample:
    """Render sample ``index`` of the stream ``seed``.

    Args:
        seed: stream seed, in [0, 2**32).
        index: sample index, >= 0. Its label is ``index % len(CLASS_NAMES)``.
        image_size: side of the square image in pixels, >= 32 (default: the version's, 64 for v2).
        version: SynthShapes version, a key of :data:`VERSIONS`.
        conflict: the cue-conflict split (v2 only): the object's shape and texture beside two decoys
            as large as the object that carry another class's cues, a textured blob (another texture) and
            a filled untextured silhouette (another shape); their class is ``decoy_label``.

    Returns:
        The sample: (H, W, 3) uint8 image, (H, W) bool object mask, label, shape and texture.
    """
    if version not in VERSIONS:
        raise ValueError(f"Unknown SynthShapes version {version!r}. Expected one of {sorted(VERSIONS)}")
    if conflict and version < 2:
        raise ValueError("The cue-conflict split exists from SynthShapes v2 on")
    spec = VERSIONS[version]
    seed = _check_int("seed", seed, 0, _MAX_SEED)
    index = _check_int("index", index, 0)
    size = _check_int("image_size", spec.default_size if image_size is None else image_size, _MIN_IMAGE_SIZE)
    rng = np.random.default_rng([seed, index])
    label = index % len(CLASS_NAMES)
    texture_index, shape_index = divmod(label, len(SHAPES))
    shape, texture = SHAPES[shape_index], TEXTURES[texture_index]

    # Object: fully inside the image (in the cue-conflict split, in the lower half of the radii so that
    # the two decoys fit beside it).
    size_u, x_u, y_u, angle_u = rng.random(4).tolist()
    low, high = spec.object_radius
    if conflict:
        high = (low + high) / 2
    radius = size * (low + (high - low) * size_u)
    if spec.edge_bias:  # arcsine-distributed positions: objects drawn towards the sides, off the centre
        x_u, y_u = ((1 - math.cos(math.pi * u)) / 2 for u in (x_u, y_u))
    cx = radius + 1 + x_u * (size - 2 * radius - 2)
    cy = radius + 1 + y_u * (size - 2 * radius - 2)

    canvas = _background(rng, size, spec.noise)  # (3, H, W), channels first for fast broadcasting

    # Distractors: a blob, an outline, then up to ``extra_distractors`` of either; centred away from the
    # object, which is drawn last (a distractor is left out when none of 16 random centres is far enough).
    extra, *coins = rng.random(1 + spec.extra_distractors).tolist()
    kinds = [0, 1] + [int(coin < 0.5) for coin in coins[: int((spec.extra_distractors + 1) * extra)]]
    for kind in kinds:
        draw, (min_radius, max_radius) = _DISTRACTORS[kind], spec.distractor_radius[kind]
        d_radius = size * (min_radius + (max_radius - min_radius) * rng.random())
        centres = rng.random((16, 2)) * size
        far = np.hypot(centres[:, 0] - cx, centres[:, 1] - cy) >= radius + 0.8 * d_radius
        if far.any():
            x, y = centres[far.argmax()].tolist()
            draw(rng, canvas, x, y, d_radius, spec)

    decoy_label = None
    if conflict:
        other_texture, other_shape = (rng.integers(1, n) for n in (len(TEXTURES), len(SHAPES)))
        decoy_texture = TEXTURES[(texture_index + other_texture) % len(TEXTURES)]
        decoy_shape = SHAPES[(shape_index + other_shape) % len(SHAPES)]
        decoy_label = CLASS_NAMES.index(f"{_ADJECTIVES[decoy_texture]} {decoy_shape}")
        taken = [(cx, cy, radius)]
        for scale in (1.0, 0.85, 0.7, 0.55, 0.4):  # as large as the object where they fit
            taken = [(cx, cy, radius)]
            for _ in range(2):
                centre = _free_centre(rng, size, scale * radius, taken)
                if centre is None:
                    break
                taken.append((*centre, scale * radius))
            if len(taken) == 3:
                break
        if len(taken) < 3:
            raise RuntimeError(f"no room for the cue-conflict decoys in sample {index} of seed {seed}")
        (bx, by, br), (sx, sy, sr) = taken[1:]
        _draw_blob(rng, canvas, bx, by, br, spec, decoy_texture)
        _draw_silhouette(rng, canvas, sx, sy, sr, decoy_shape)

    ys, xs, dy, dx = _window(cx, cy, radius, size)
    u, v = _rotate(dy, dx, 2 * math.pi * angle_u, radius)
    sdf = _shape_sdf(shape, u, v)
    sdf *= radius
    _draw_textured(rng, canvas[:, ys, xs], sdf, dy, dx, texture, size, spec.period)
    mask = np.zeros((size, size), dtype=bool)
    mask[ys, xs] = sdf <= 0

    canvas.clip(0.0, 1.0, out=canvas)
    canvas *= 255.0
    canvas += 0.5
    image = np.stack(list(canvas.astype(np.uint8)), axis=-1)
    return SynthSample(image=image, mask=mask, label=label, shape=shape, texture=texture, decoy_label=decoy_label)


class SynthShapes(torch.utils.data.Dataset):
    """SynthShapes as a map-style dataset of ``num_samples`` images rendered on the fly.

    Item ``i`` is ``render_sample(seed, i, image_size, version=version, conflict=conflict)``; the val
    split written by :func:`export_imagefolder` is ``SynthShapes(num_val, seed=val_seed(seed))``.

    Args:
        num_samples: number of samples, >= 1.
        image_size: side of the square images in pixels, >= 32 (default: the version's).
        seed: stream seed, in [0, 2**32).
        transform: applied to the (3, H, W) float image in [0, 1].
        version: SynthShapes version, a key of :data:`VERSIONS`.
        conflict: the cue-conflict split (:func:`render_sample`).
    """

    def __init__(
        self,
        num_samples: int,
        *,
        image_size: int | None = None,
        seed: int = 0,
        transform: Callable | None = None,
        version: int = 2,
        conflict: bool = False,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"Unknown SynthShapes version {version!r}. Expected one of {sorted(VERSIONS)}")
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.image_size = _check_int("image_size", image_size or VERSIONS[version].default_size, _MIN_IMAGE_SIZE)
        self.seed = _check_int("seed", seed, 0, _MAX_SEED)
        self.version, self.conflict = version, conflict
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
        return render_sample(self.seed, i % self.num_samples, self.image_size, version=self.version,
                             conflict=self.conflict)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        """Returns ``(image, label)``: image is a (3, H, W) float32 tensor in [0, 1], then ``transform``-ed."""
        sample = self.sample(i)
        image = F.to_dtype(F.to_image(sample.image), torch.float32, scale=True)
        if self.transform is not None:
            image = self.transform(image)
        return image, sample.label

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_samples={self.num_samples}, image_size={self.image_size}, seed={self.seed}, "
                f"version={self.version}{', conflict=True' * self.conflict})")


def cue_accuracy(confusion: Sequence[Sequence[int]]) -> dict[str, float]:
    """Accuracy (%) on each cue alone from a 12 x 12 confusion matrix (rows: true class, columns:
    predicted): ``shape`` counts a prediction right when its shape is (whatever its texture), and
    ``texture`` likewise. A model that reads only the local cue scores high on texture alone."""
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.shape != (len(CLASS_NAMES),) * 2:
        raise ValueError(f"Expected a {len(CLASS_NAMES)}x{len(CLASS_NAMES)} confusion matrix, got {counts.shape}")
    labels = np.arange(len(CLASS_NAMES))
    shape, texture = labels % len(SHAPES), labels // len(SHAPES)
    total = counts.sum()
    return {
        "shape": float(100 * counts[shape[:, None] == shape[None, :]].sum() / total),
        "texture": float(100 * counts[texture[:, None] == texture[None, :]].sum() / total),
    }


def conflict_reliance(predictions: Sequence[int], labels: Sequence[int], decoy_labels: Sequence[int]) -> dict[str, float]:
    """What a model follows on the cue-conflict split, in % of the images: ``top1`` the object's class;
    ``shape``/``texture`` the object's shape (texture), whatever the other cue; ``decoy_shape``/
    ``decoy_texture`` the shape (texture) the decoys carry instead. A model that binds both cues to
    the object scores high on the first three; one that pools cues over the image drifts to the decoys."""
    predicted, label, decoy = (np.asarray(v, dtype=np.int64) for v in (predictions, labels, decoy_labels))
    if not len(predicted) == len(label) == len(decoy) > 0:
        raise ValueError(f"Expected as many labels and decoy labels as predictions, at least one; got "
                         f"{len(predicted)}, {len(label)}, {len(decoy)}")
    n = len(SHAPES)
    rate = lambda hits: float(100 * hits.mean())  # noqa: E731
    return {"top1": rate(predicted == label), "shape": rate(predicted % n == label % n),
            "texture": rate(predicted // n == label // n), "decoy_shape": rate(predicted % n == decoy % n),
            "decoy_texture": rate(predicted // n == decoy // n)}


def export_imagefolder(
    root: str | Path,
    *,
    num_train: int,
    num_val: int,
    image_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write SynthShapes to disk in the ``torchvision.datasets.ImageFolder`` layout.

    Files: ``root/{train,val}/<class name>/<index>.png`` (RGB) and the object masks as
    ``root/{train,val}_masks/<class name>/<index>.png`` (8-bit grey, 0 or 255). The train
    split uses ``seed``, the val split ``val_seed(seed)``. Indices are
    zero-padded to at least 6 digits so files sort in index order. A split with 0 samples is not
    written; otherwise all 12 class folders are created (``ImageFolder`` rejects empty class
    folders unless ``allow_empty=True``, so give each split >= 12 samples).

    Returns:
        ``Path(root)``.
    """
    root = Path(root)
    num_train = _check_int("num_train", num_train, 0)
    num_val = _check_int("num_val", num_val, 0)
    image_size = _check_int("image_size", image_size, _MIN_IMAGE_SIZE)
    seed = _check_int("seed", seed, 0, _MAX_SEED)
    splits = [("train", seed, num_train), ("val", val_seed(seed), num_val)]
    with tqdm(total=num_train + num_val, disable=not progress, desc="SynthShapes", unit="img") as bar:
        for split, split_seed, count in splits:
            if count == 0:
                continue
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


def main(argv: list[str] | None = None) -> None:
    """``python -m tokenfusion.data``: export SynthShapes, or save a preview grid."""
    parser = argparse.ArgumentParser(
        prog="python -m tokenfusion.data",
        description="Export SynthShapes as an ImageFolder tree, or save a preview grid of one sample per class.",
    )
    parser.add_argument("--out", type=Path, help="export root directory")
    parser.add_argument("--train", type=int, default=0, help="number of train images")
    parser.add_argument("--val", type=int, default=0, help="number of val images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (>= 32)")
    parser.add_argument("--seed", type=int, default=TRAIN_SEED, help="train seed; val uses val_seed(seed) = seed + 1")
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

