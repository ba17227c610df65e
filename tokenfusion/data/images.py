"""Safe decoding of image files that users hand in (uploads, paths): bytes to an RGB ``PIL.Image``.

Every file that cannot be used raises :class:`ImageError` with a plain message; every image
that can be used comes back as 8-bit RGB the way a viewer would show it: EXIF rotation applied,
the first frame of an animation, transparency composited on white, 16-bit and CMYK converted.
What was changed is listed in ``image.info["notes"]`` so a user interface can say it.
:func:`tokenfusion.data.transforms.preprocess` then makes the model input.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageError", "load_image", "to_rgb"]

#: Largest image accepted, in pixels (width x height): 40 megapixels, about 120 MB decoded as RGB.
DEFAULT_MAX_PIXELS = 40_000_000
_ORIENTATION = 0x0112  # EXIF tag
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageError(ValueError):
    """A file that cannot be used as an image; the message says why, in plain words."""


def load_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None) -> Image.Image:
    """Decode ``data`` (the bytes of a JPEG, PNG, WebP, BMP, GIF, TIFF... file) to an RGB image.

    ``max_pixels`` bounds width x height, checked from the header before any pixel is decoded
    (decompression bombs). ``max_side``, when given, shrinks the result to fit in a square of that
    side (aspect ratio kept), so that very large photos stay cheap to show and cache.
    Raises :class:`ImageError` for an empty, unrecognised, truncated or oversized file.
    """
    if not data:
        raise ImageError("The file is empty (0 bytes). Choose an image file such as a JPEG or PNG.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image.size, max_pixels)
            frames = getattr(image, "n_frames", 1)
            image.seek(0)
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"The image is too large to open safely (more than {max_pixels:,} pixels); it may be a "
            "decompression bomb. Use a smaller image."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            "This file is not an image that can be read. Use a JPEG, PNG, WebP, BMP, GIF or TIFF file."
        ) from None
    except (OSError, SyntaxError, EOFError, ValueError, IndexError, MemoryError) as e:
        if "truncated" in str(e).lower() or isinstance(e, EOFError):
            raise ImageError("The image file is truncated: it ends before the picture does. Upload it again.") from None
        raise ImageError(f"The image file is damaged and cannot be decoded ({_reason(e)}).") from None
    notes = [f"animated image: the first of {frames} frames is used"] if frames > 1 else []
    return to_rgb(image, max_side=max_side, notes=notes)


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"The image has no pixels ({width} x {height}).")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is {width} x {height} pixels, more than the {max_pixels:,} allowed; it may be a "
            "decompression bomb. Use a smaller image."
        )


def to_rgb(image: Image.Image, *, max_side: int | None = None, notes: list[str] | None = None) -> Image.Image:
    """``image`` of any mode as 8-bit RGB, the way a viewer shows it (EXIF rotation, 16-bit and
    floating-point scaled, CMYK converted, transparency on white, greyscale repeated), shrunk to
    fit ``max_side`` when given; what changed is appended to ``notes`` and kept in ``info["notes"]``."""
    notes = [] if notes is None else notes
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
        notes.append("rotated as its EXIF orientation says")
    if image.mode in _HIGH_BIT_MODES:
        image = image.point(lambda v: v / 256).convert("L")
        notes.append("16-bit image scaled to 8 bits")
    elif image.mode == "F":
        image, low, high = _float_to_8_bits(image)
        notes.append(f"floating-point image: its range {low:.4g} to {high:.4g} scaled to 0-255")
    if image.mode == "CMYK":
        notes.append("CMYK colours converted to RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        notes.append("transparent areas shown on white")
    if image.mode in ("L", "1"):
        notes.append("greyscale image repeated on the three colour channels")
    image = image.convert("RGB")
    if max_side is not None and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    image.info = {"notes": notes}
    return image


def _float_to_8_bits(image: Image.Image) -> tuple[Image.Image, float, float]:
    """A floating-point (mode ``F``) image as 8-bit greyscale, its finite values mapped linearly from
    their own range to 0-255 (NaN and infinities shown black; a constant image black), and that range."""
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return Image.new("L", image.size), 0.0, 0.0
    low, high = float(values[finite].min()), float(values[finite].max())
    scaled = np.where(finite, (values - low) / ((high - low) or 1.0) * 255.0, 0.0)
    return Image.fromarray(np.round(scaled).astype(np.uint8), "L"), low, high


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
