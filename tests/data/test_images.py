"""``load_image``: every bad file gets a plain ImageError; every usable one comes back as RGB as a viewer shows it."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tokenfusion.data.images import ImageError, load_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(size: tuple[int, int] = (40, 30)) -> Image.Image:
    """An RGB image whose red channel grows left to right, so rotations are visible."""
    w, h = size
    red = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    return Image.fromarray(np.stack([red, np.zeros_like(red), np.full_like(red, 80)], -1))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_upload_format_decodes_to_rgb(fmt: str) -> None:
    image = load_image(encode(gradient(), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    assert image.info["notes"] == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is a text file, not a picture\n" * 10, "not an image"),
        (b"%PDF-1.7\n" + bytes(range(256)) * 4, "not an image"),
    ],
)
def test_not_an_image(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(fmt: str) -> None:
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), fmt)
    with pytest.raises(ImageError, match="truncated|damaged"):
        load_image(data[: len(data) // 2])


def huge_png_header(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width x height`` pixels (CRC fixed), as a bomb's would."""
    data = bytearray(encode(Image.new("RGB", (4, 4)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)  # IHDR payload starts at byte 16
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("side", [20_000, 100_000])  # above our limit; above Pillow's own bomb limit
def test_decompression_bomb_is_refused_from_the_header(side: int) -> None:
    with pytest.raises(ImageError, match="too large|decompression bomb"):
        load_image(huge_png_header(side, side))


def test_max_pixels_is_the_callers_limit() -> None:
    data = encode(gradient((100, 100)), "PNG")
    with pytest.raises(ImageError, match="100 x 100 pixels"):
        load_image(data, max_pixels=5_000)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


def test_greyscale() -> None:
    image = load_image(encode(gradient().convert("L"), "PNG"))
    pixels = np.asarray(image)
    assert image.mode == "RGB" and (pixels[..., 0] == pixels[..., 2]).all()
    assert "greyscale" in image.info["notes"][0]


def test_rgba_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    image = load_image(encode(rgba, "PNG"))
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 255)
    assert any("transparent" in n for n in image.info["notes"])


def test_cmyk_jpeg() -> None:
    image = load_image(encode(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "JPEG"))
    red, green, blue = image.getpixel((5, 5))
    assert image.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    levels = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    image = load_image(encode(Image.fromarray(levels), "PNG"))
    assert np.asarray(image)[0, :, 0].tolist() == [0, 64, 128, 255]
    assert any("16-bit" in n for n in image.info["notes"])


@pytest.mark.parametrize("values", [[0.0, 0.25, 0.5, 1.0], [-3.0, -1.5, 0.0, 3.0], [1e4, 2e4, 3e4, 4e4]])
def test_float_tiff_is_scaled_by_its_range(values: list[float]) -> None:
    """A floating-point TIFF (a depth map, a [0, 1] render) shows its range, not a black square."""
    levels = np.array([values], dtype=np.float32).repeat(4, 0)
    image = load_image(encode(Image.fromarray(levels, "F"), "TIFF"))
    low, high = min(values), max(values)
    expected = [round((v - low) / (high - low) * 255) for v in values]
    assert np.asarray(image)[0, :, 0].tolist() == expected
    assert f"range {low:.4g} to {high:.4g} scaled to 0-255" in " ".join(image.info["notes"])


def test_float_tiff_with_nan_and_constant_values() -> None:
    nan = load_image(encode(Image.fromarray(np.array([[np.nan, 0.0, 2.0]], np.float32), "F"), "TIFF"))
    assert np.asarray(nan)[0, :, 0].tolist() == [0, 0, 255]
    flat = load_image(encode(Image.fromarray(np.full((3, 3), 7.0, np.float32), "F"), "TIFF"))
    assert not np.asarray(flat).any() and "range 7 to 7" in " ".join(flat.info["notes"])


def test_palette_with_transparency() -> None:
    palette = Image.new("P", (6, 6), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    image = load_image(encode(palette, "PNG", transparency=0))
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((3, 3)) == (200, 30, 30)


def test_animated_gif_gives_the_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), colour) for colour in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = load_image(data)
    red, green, blue = image.getpixel((6, 6))
    assert red > 200 and green < 50 and blue < 50
    assert image.info["notes"] == ["animated image: the first of 3 frames is used"]


def test_exif_rotation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image = load_image(encode(gradient((40, 30)), "JPEG", exif=exif.tobytes()))
    assert image.size == (30, 40)
    column = np.asarray(image)[:, 15, 0].astype(int)
    assert column[0] < column[-1] - 100  # the red ramp now runs top to bottom
    assert "EXIF" in image.info["notes"][0]


def test_max_side_shrinks_large_images() -> None:
    image = load_image(encode(gradient((400, 200)), "PNG"), max_side=100)
    assert image.size == (100, 50)
