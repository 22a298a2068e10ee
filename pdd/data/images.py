"""Read any raw medical image into one canonical 8-bit form, or fail naming the file.

Raw downloads mix JPEG and PNG (sometimes behind the wrong suffix), 8- and 16-bit data, palettes,
alpha channels and EXIF rotations. Every preparer and the Dataset go through `read_image`, so a
prepared dataset holds only 8-bit ``L`` (grayscale) or ``RGB`` PNGs and later stages never see a
quirk. The conversions, in the order applied:

* **Format** is detected from the file content, never from the suffix (a ``.jpg`` that holds a
  PNG is read as PNG). Multi-frame files (TIFF, GIF) contribute their first frame.
* **Decompression bombs**: an image with more than `MAX_PIXELS` pixels is rejected before its
  pixels are decoded, so a hostile or corrupt header cannot exhaust memory.
* **Truncated or corrupt** files are rejected (`UnreadableImageError`, naming the file); they are
  never padded with grey as ``ImageFile.LOAD_TRUNCATED_IMAGES`` would do.
* **EXIF orientation** is applied, so the pixels are upright as a viewer shows them.
* **16-bit and 32-bit** grayscale (``I;16*``, ``I``, ``F``) is stretched linearly from the image's
  own min..max to 0..255. Medical files rarely fill the 16-bit range (12-bit CT and X-ray are
  common), so a fixed division by 257 would leave them almost black. A constant image becomes 0.
* **Palette** images are expanded; a palette with a transparent entry is treated like RGBA.
* **Alpha** (``RGBA``, ``LA``, ``PA``) is composited onto black: medical backgrounds are black, so
  transparent padding becomes background instead of whatever colour the hidden pixels had.
* **CMYK**, ``YCbCr``, ``LAB`` and ``HSV`` are converted to RGB with Pillow's conversion (no ICC
  colour management; medical images are not colour-managed).
* **Grayscale in RGB**: an RGB image whose three channels are identical is reduced to ``L``;
  nothing is lost and the prepared file is a third of the size.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pdd.errors import DataError

#: Largest accepted image (width × height); bigger headers are rejected as decompression bombs.
#: Pillow's own warning threshold; the largest image in the paper datasets has under 3 Mpx.
MAX_PIXELS = 89_478_485

_HIGH_BIT_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class UnreadableImageError(DataError):
    """An image file that cannot be decoded (corrupt, truncated, not an image, too large)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"cannot read image {self.path}: {reason}. Re-download the dataset, or pass "
            "--exclude-unreadable to leave it out (it is then recorded in split.csv)."
        )


def read_image(path: str | Path) -> Image.Image:
    """Decode `path` into an 8-bit ``L`` or ``RGB`` image (see the module docstring for the rules)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise UnreadableImageError(
                        path, f"{width}x{height} pixels exceeds the {MAX_PIXELS}-pixel limit (decompression bomb?)"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
    except UnreadableImageError:
        raise
    except (Image.DecompressionBombWarning, *_DECODE_ERRORS) as exc:
        raise UnreadableImageError(path, f"{type(exc).__name__}: {exc}") from exc
    return to_canonical(image)


def detected_format(path: str | Path) -> str | None:
    """The format Pillow detects from the content ("PNG", "JPEG", ...), or None if not an image."""
    try:
        with Image.open(path) as image:
            return image.format
    except _DECODE_ERRORS:
        return None


def to_canonical(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit ``L`` or ``RGB``."""
    mode = image.mode
    if mode in _HIGH_BIT_DEPTH_MODES:
        return _stretch_to_8bit(np.asarray(image))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in ("L", "RGB") and mode not in _ALPHA_MODES:
        image = image.convert("RGB")
    if image.mode in _ALPHA_MODES:
        image = _composite_on_black(image)
    if image.mode == "RGB":
        pixels = np.asarray(image)
        if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]):
            return Image.fromarray(np.ascontiguousarray(pixels[..., 0]), mode="L")
    return image


def _stretch_to_8bit(pixels: np.ndarray) -> Image.Image:
    pixels = pixels.astype(np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = np.zeros_like(pixels) if high <= low else (pixels - low) * (255.0 / (high - low))
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


def _composite_on_black(image: Image.Image) -> Image.Image:
    gray = image.mode in ("LA", "La")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    composite = Image.alpha_composite(background, rgba).convert("RGB")
    return composite.convert("L") if gray else composite


def read_mask(path: str | Path) -> np.ndarray:
    """A boolean pixel mask. Masks stored as 0/1 and as 0/255 are both accepted."""
    pixels = np.asarray(read_image(path).convert("L"))
    threshold = 0 if pixels.max(initial=0) <= 1 else 127
    return pixels > threshold


def png_bytes(image: Image.Image) -> bytes:
    """Losslessly encode `image` as PNG; the same pixels always give the same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """Encode a boolean mask as a 0/255 grayscale PNG."""
    return png_bytes(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L"))
