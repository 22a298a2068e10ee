"""Hostile and odd image files, through `pdd data prepare` and through `PreparedDataset`: each one is
converted as docs/data.md documents, or rejected with an error naming the file; never dropped silently."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pdd.cli import main
from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD, PreparedDataset
from pdd.data.split import EXCLUDED, read_split_csv
from pdd.data.synthetic import generate
from pdd.errors import DataError

pytestmark = pytest.mark.reliability


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient(height: int = 24, width: int = 32) -> np.ndarray:
    return (np.arange(height * width).reshape(height, width) % 251).astype(np.uint8)


def truncated_png() -> bytes:
    data = _encoded(Image.fromarray(_gradient()), "PNG")
    return data[: len(data) // 2]


def sixteen_bit_png() -> bytes:
    pixels = np.linspace(1000, 4095, 24 * 32).reshape(24, 32).astype(np.uint16)  # 12-bit CT values
    return _encoded(Image.fromarray(pixels), "PNG")


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (32, 24), 1)
    image.putpalette([0, 0, 0, 200, 200, 200, 90, 90, 90] + [0] * 759)
    image.paste(2, (0, 0, 16, 24))  # left half: opaque grey 90; right half: entry 1, fully transparent
    return _encoded(image, "PNG", transparency=1)


def cmyk_jpeg() -> bytes:
    return _encoded(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG", quality=100)  # pure red


def exif_rotated_jpeg() -> bytes:
    pixels = np.zeros((24, 32), np.uint8)
    pixels[:12, :16] = 255  # bright top-left quadrant as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return _encoded(Image.fromarray(pixels), "JPEG", quality=100, exif=exif.tobytes())


def decompression_bomb_png() -> bytes:
    """A real bomb: 10,000 x 10,000 bilevel pixels (100 Mpx > MAX_PIXELS) in about 20 kB of PNG."""
    width = height = 10_000

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width // 8)
    data = b"".join(compressor.compress(row * 1000) for _ in range(height // 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def check_sixteen_bit(pixels: np.ndarray) -> None:  # stretched from its own min..max to 0..255
    assert pixels.ndim == 2 and pixels.min() == 0 and pixels.max() == 255


def check_palette(pixels: np.ndarray) -> None:  # transparent entry composited onto black
    assert pixels.ndim == 2 and (pixels[:, :16] == 90).all() and (pixels[:, 16:] == 0).all()


def check_cmyk(pixels: np.ndarray) -> None:  # converted to RGB
    assert pixels.shape == (24, 32, 3) and pixels[..., 0].min() > 200 and pixels[..., 1:].max() < 60


def check_exif(pixels: np.ndarray) -> None:  # upright as a viewer shows it: the bright block is now top-right
    assert pixels.shape == (32, 24)
    assert pixels[:16, 12:].mean() > 200 and pixels[:, :12].mean() < 30


CONVERTED = {
    "16bit.png": (sixteen_bit_png, check_sixteen_bit),
    "palette_transparent.png": (palette_png_with_transparency, check_palette),
    "cmyk.jpg": (cmyk_jpeg, check_cmyk),
    "exif_rotated.jpg": (exif_rotated_jpeg, check_exif),
}
REJECTED = {
    "truncated.png": (truncated_png, "truncated|broken|image file"),
    "zero_byte.png": (lambda: b"", "cannot identify|empty"),
    "text.png": (lambda: b"patient notes, not pixels\n" * 20, "cannot identify"),
    "bomb.png": (decompression_bomb_png, "decompression bomb|exceeds"),
}


@pytest.fixture
def chexpert_raw(tmp_path) -> Path:
    """A SQUID-layout CheXpert raw folder with one good image per folder."""
    raw = tmp_path / "raw"
    for folder in ("train_256/normal_256", "valid_256_pa/normal_256", "valid_256_pa/abnormal_256"):
        (raw / folder).mkdir(parents=True)
        (raw / folder / "good.png").write_bytes(_encoded(Image.fromarray(_gradient()), "PNG"))
    return raw


def _prepare(raw: Path, out: Path, *flags: str) -> int:
    return main(["data", "prepare", "chexpert", "--raw", str(raw), "--out", str(out), *flags])


@pytest.mark.parametrize("name", CONVERTED)
def test_prepare_converts_as_documented(chexpert_raw, tmp_path, name):
    build, check = CONVERTED[name]
    (chexpert_raw / "train_256/normal_256" / name).write_bytes(build())
    assert _prepare(chexpert_raw, tmp_path / "out") == 0
    (row,) = [row for row in read_split_csv(tmp_path / "out") if row.source.endswith(name)]
    assert row.split == "train" and row.path == f"train/good/{Path(name).stem}.png"
    check(np.asarray(Image.open(tmp_path / "out" / row.path)))


@pytest.mark.parametrize("name", REJECTED)
def test_prepare_rejects_naming_the_file_or_records_the_exclusion(chexpert_raw, tmp_path, capsys, name):
    build, reason = REJECTED[name]
    hostile = chexpert_raw / "train_256/normal_256" / name
    hostile.write_bytes(build())

    assert _prepare(chexpert_raw, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert str(hostile) in error and "--exclude-unreadable" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()

    assert _prepare(chexpert_raw, tmp_path / "out", "--exclude-unreadable") == 0
    (row,) = [row for row in read_split_csv(tmp_path / "out") if row.source.endswith(name)]
    assert row.split == EXCLUDED and row.path == "" and row.note.startswith("unreadable:")
    assert row.note != "unreadable:" and row.source_sha256  # the reason and the file's identity are recorded


@pytest.fixture
def prepared(tmp_path) -> Path:
    root = tmp_path / "prepared"
    generate(root, seed=0, n_train=2, n_test_normal=1, n_test_anomalous=1, size=32)
    return root


def _replace_first_train_image(root: Path, data: bytes) -> Path:
    path = root / PreparedDataset(root, split="train", image_size=32).rows[0].path
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", CONVERTED)
def test_dataset_converts_as_documented(prepared, name):
    build, check = CONVERTED[name]
    _replace_first_train_image(prepared, build())
    dataset = PreparedDataset(prepared, split="train", image_size=32)
    image = dataset[0]["image"]
    assert image.shape == (3, 32, 32) and bool(image.isfinite().all())
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    restored = image.numpy() * std + mean
    assert restored.min() >= -1e-5 and restored.max() <= 1 + 1e-5  # 8-bit range after conversion


@pytest.mark.parametrize("name", REJECTED)
def test_dataset_rejects_naming_the_file(prepared, name):
    build, reason = REJECTED[name]
    path = _replace_first_train_image(prepared, build())
    dataset = PreparedDataset(prepared, split="train", image_size=32)
    with pytest.raises(DataError, match=reason) as error:
        dataset[0]
    assert str(path) in str(error.value)
    assert dataset[1]["image"].shape == (3, 32, 32)  # the other images are unaffected
