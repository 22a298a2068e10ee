"""The documented conversions of `pdd.data.images.read_image`."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import pdd.data.images as images
from pdd.data.images import UnreadableImageError, read_image, read_mask


def _write(tmp_path, image: Image.Image, name: str, fmt: str, **save_args):
    path = tmp_path / name
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    path.write_bytes(buffer.getvalue())
    return path


def test_16bit_is_stretched_from_its_own_range(tmp_path):
    pixels = np.array([[1000, 1500], [2000, 4095]], dtype=np.uint16)  # 12-bit data in a 16-bit file
    path = _write(tmp_path, Image.fromarray(pixels), "ct.png", "PNG")
    result = read_image(path)
    assert result.mode == "L"
    expected = np.rint((pixels - 1000) * 255.0 / 3095).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(result), expected)


def test_rgba_is_composited_on_black(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[..., :3] = (200, 100, 50)
    pixels[..., 3] = [[255, 0], [128, 255]]
    result = np.asarray(read_image(_write(tmp_path, Image.fromarray(pixels, mode="RGBA"), "a.png", "PNG")))
    assert result.shape == (2, 2, 3)
    np.testing.assert_array_equal(result[0, 0], (200, 100, 50))
    np.testing.assert_array_equal(result[0, 1], (0, 0, 0))
    np.testing.assert_allclose(result[1, 0], (100, 50, 25), atol=1)


def test_palette_with_transparency_and_gray_alpha(tmp_path):
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 90, 90, 90] + [0] * 762)
    palette_image.putpixel((0, 0), 1)
    palette_image.putpixel((1, 0), 1)
    palette_image.info["transparency"] = bytes([255, 0])  # entry 1 fully transparent
    result = read_image(_write(tmp_path, palette_image, "p.png", "PNG", transparency=bytes([255, 0])))
    assert result.mode == "L" and np.asarray(result).max() == 0

    gray_alpha = Image.fromarray(np.dstack([np.full((2, 2), 200, np.uint8), np.array([[255, 0], [255, 0]], np.uint8)]),
                                 mode="LA")
    np.testing.assert_array_equal(np.asarray(read_image(_write(tmp_path, gray_alpha, "la.png", "PNG"))),
                                  [[200, 0], [200, 0]])


def test_cmyk_becomes_rgb_and_identical_channels_become_gray(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red
    result = read_image(_write(tmp_path, cmyk, "c.jpg", "JPEG", quality=100))
    assert result.mode == "RGB" and np.asarray(result)[..., 0].min() > 200
    gray_rgb = Image.fromarray(np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4, 1), 3, axis=2), mode="RGB")
    assert read_image(_write(tmp_path, gray_rgb, "g.png", "PNG")).mode == "L"


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3), np.uint8)
    pixels[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = _write(tmp_path, Image.fromarray(pixels, mode="L"), "r.png", "PNG", exif=exif.tobytes())
    result = np.asarray(read_image(path))
    assert result.shape == (3, 2) and result[0, 1] == 255


def test_content_decides_the_format(tmp_path):
    path = _write(tmp_path, Image.new("L", (3, 3), 7), "looks_like.jpg", "PNG")
    assert images.detected_format(path) == "PNG"
    assert np.asarray(read_image(path)).max() == 7


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_broken_files_raise_naming_the_file(tmp_path, damage):
    path = _write(tmp_path, Image.new("RGB", (64, 64), (1, 2, 3)), "bad.jpg", "JPEG")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not an image" * 20, "empty": b""}[damage])
    with pytest.raises(UnreadableImageError, match="bad.jpg") as error:
        read_image(path)
    assert error.value.path == path


def test_decompression_bomb_is_rejected_before_decoding(tmp_path, monkeypatch):
    path = _write(tmp_path, Image.new("L", (100, 100)), "big.png", "PNG")
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 99)
    with pytest.raises(UnreadableImageError, match="decompression bomb"):
        read_image(path)


def test_masks_accept_0_1_and_0_255(tmp_path):
    for scale, name in ((1, "m1.png"), (255, "m255.png")):
        pixels = np.array([[0, 1], [1, 0]], np.uint8) * scale
        assert read_mask(_write(tmp_path, Image.fromarray(pixels, mode="L"), name, "PNG")).tolist() == [
            [False, True], [True, False]]
