"""Turn whatever a clinician-researcher hands ``pdd predict`` into 2-D 8-bit images to score.

People bring files from three worlds, and each has its own rule here:

* **Ordinary images** (PNG, JPEG, BMP, TIFF; detected from content, as everywhere in pdd) go
  through `pdd.data.images.read_image` unchanged, so predicting on a prepared dataset's PNGs gives
  exactly the pixels the evaluation saw. A `window` does not apply to them: they are already
  display images.
* **DICOM** files, as exported from a PACS or viewer: one file per slice, often without a suffix
  (recognised by the ``DICM`` marker at byte 128, or by a ``.dcm`` suffix), or one multi-frame file.
  Stored values become modality values (``stored * RescaleSlope + RescaleIntercept``, i.e. HU for
  CT), which a window maps to 0..255: the `window` argument, else the file's own
  WindowCenter/WindowWidth (the first, when several), else a min..max stretch over the whole file
  (all frames together, so the frames of one file stay comparable). MONOCHROME1 ("white is low")
  is inverted after windowing, so bone is white as a viewer shows it. Colour files (RGB, and
  YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT, which pydicom's pixel array already returns as
  RGB) become RGB images without windowing; other photometric interpretations (PALETTE COLOR,
  YBR_PARTIAL_*) are reported as problems rather than guessed at. Enhanced (multi-frame) CT/MR
  keep rescale and window in functional-group sequences; those are looked up per frame. A
  Modality LUT Sequence, a VOI LUT Sequence and a non-linear VOILUTFunction are not applied (rare
  in CT/MR): the rescale and window are always the linear ones above.
* **NIfTI** volumes (``.nii``, ``.nii.gz``), as produced by research pipelines such as dcm2niix:
  values come from nibabel with ``scl_slope``/``scl_inter`` applied; the window is the `window`
  argument, else a min..max stretch over the whole volume (not per slice, so an almost empty
  top slice does not get its noise stretched to full contrast). Slices are taken along `axis` of
  the array as stored (no reorientation) and each is turned with ``np.rot90`` (see `_nifti_slices`).
  A 4-D file holding several volumes is a problem to report (split it first).
* **Folders** are walked recursively in sorted order, skipping hidden entries; the DICOM files of
  one series come out in anatomical order (see `_reading_order`).

The window formula, for modality value ``v``: ``lower = center - width/2`` and
``round_half_even(clip((v - lower) / width, 0, 1) * 255)``; non-finite values (NaN in masked NIfTI)
become 0. Grayscale output is mode ``L``.

Anything that cannot be scored (a missing path, a text file named ``.png``, a truncated DICOM, a
DICOM without pixels, an unreadable NIfTI, an empty folder) is yielded as an `InputProblem` with a
one-line reason, never raised and never skipped silently: the caller writes it to errors.csv and
carries on with the next input.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.multival import MultiValue

from pdd.data.images import UnreadableImageError, detected_format, read_image, to_canonical
from pdd.errors import ConfigError


@dataclass(frozen=True)
class ScanSlice:
    """One 2-D image to score and where it came from."""

    source: Path
    #: Frame (DICOM multi-frame) or slice (NIfTI) number within `source`; None for a 2-D file.
    slice_index: int | None
    #: 8-bit ``L`` or ``RGB``.
    image: Image.Image

    @property
    def name(self) -> str:
        """A short label for tables and captions, e.g. ``scan.nii.gz[slice 12]`` or ``a.png``."""
        if self.slice_index is None:
            return self.source.name
        return f"{self.source.name}[slice {self.slice_index}]"


@dataclass(frozen=True)
class InputProblem:
    """An input that yields nothing to score; `reason` is one line: what is wrong, what to do."""

    source: Path
    reason: str


@dataclass(frozen=True)
class Window:
    """A display window in modality units (HU for CT): `center` maps to mid-grey, `width` to the full range."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width) and self.width > 0):
            raise ConfigError(
                f"window center must be finite and width > 0, got center={self.center}, width={self.width}"
            )

    @property
    def lower(self) -> float:
        return self.center - self.width / 2

    @property
    def upper(self) -> float:
        return self.center + self.width / 2


#: Standard head-CT windows from Radiopaedia's "Windowing (CT)" article (head and neck presets):
#: brain W:80 L:40; subdural W:130-300 L:50-100, of which we take the middle (C 75, W 215);
#: bone is the temporal-bone window W:2800 L:600, which shows fine skull detail.
WINDOW_PRESETS: dict[str, Window] = {
    "brain": Window(center=40, width=80),
    "subdural": Window(center=75, width=215),
    "bone": Window(center=600, width=2800),
}


def parse_window(text: str | None) -> Window | None:
    """A `Window` from a preset name or ``"C,W"`` (e.g. ``"40,80"``, ``"-600,1500"``); None stays None."""
    if text is None:
        return None
    key = text.strip().lower()
    if key in WINDOW_PRESETS:
        return WINDOW_PRESETS[key]
    choices = f"use one of {', '.join(WINDOW_PRESETS)}, or 'center,width' in modality units (HU for CT) such as '40,80'"
    parts = key.split(",")
    if len(parts) != 2:
        raise ConfigError(f"window {text!r} is not recognised: {choices}")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"window {text!r} is not recognised: {choices}") from None
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ConfigError(f"window {text!r} needs a finite center and a width > 0: {choices}")
    return Window(center=center, width=width)


def iter_scan_slices(
    inputs: Sequence[str | Path], *, window: Window | None = None, axis: int = 2
) -> Iterator[ScanSlice | InputProblem]:
    """Every 2-D image in `inputs` (files and folders, in the order given), or the problem with each.

    Lazy: a file is read when the iteration reaches it, and a NIfTI volume's slices are made one at
    a time (a folder's DICOM headers, without pixels, are read when the folder is reached, to put
    its series in order). `window` overrides DICOM window tags and the NIfTI stretch; `axis` (0, 1 or 2 of the
    NIfTI array as stored) is the one slices are taken along. Both are checked here, before
    iteration, so a bad option fails at once instead of after the first file.
    """
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2 (an axis of the NIfTI array as stored), got {axis!r}")
    if window is not None and not isinstance(window, Window):
        raise ConfigError(f"window must be a Window (see parse_window), got {window!r}")
    if isinstance(inputs, (str, os.PathLike)):  # one path given where a list was meant
        inputs = [inputs]
    return _iter_inputs([Path(item) for item in inputs], window, axis)


def count_inputs(inputs: Sequence[str | Path]) -> int:
    """How many files `iter_scan_slices` will open: a progress-bar total (advance when `source` changes).

    A missing path or an empty folder counts as one (it yields one problem). Counting only lists
    folders; it reads no file.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    total = 0
    for item in inputs:
        path = Path(item)
        total += max(1, sum(1 for _ in _walk(path))) if path.is_dir() else 1
    return total


def _iter_inputs(paths: list[Path], window: Window | None, axis: int) -> Iterator[ScanSlice | InputProblem]:
    for path in paths:
        if path.is_dir():
            yield from _folder_slices(path, window, axis)
        else:
            yield from _file_slices(path, window, axis)


# --- folders ---------------------------------------------------------------------------------


def _folder_slices(folder: Path, window: Window | None, axis: int) -> Iterator[ScanSlice | InputProblem]:
    """Everything under `folder`, then one problem for the folder itself if nothing could be scored.

    The closing problem matters when a clinician points at the wrong folder (a report export, a
    folder of .txt notes): the per-file reasons alone would not say that the folder gave nothing.
    """
    entries = list(_walk(folder))
    if not entries:
        yield InputProblem(
            folder, "folder is empty (hidden files are skipped); point at the folder that holds the images"
        )
        return
    scored = 0
    for entry in _reading_order(entries):
        if isinstance(entry, InputProblem):
            yield entry
            continue
        for item in _file_slices(entry, window, axis):
            scored += isinstance(item, ScanSlice)
            yield item
    if scored == 0:
        yield InputProblem(
            folder,
            "nothing to score in this folder: no file in it is a readable image, DICOM or NIfTI file "
            "(each one is reported separately)",
        )


def _walk(folder: Path) -> Iterator[Path | InputProblem]:
    """Files under `folder`, depth first with each folder's entries sorted by name; hidden entries skipped.

    Hidden entries (``.DS_Store``, ``.git``) are never medical data. A folder reached twice through
    symbolic links is walked once, so a link loop cannot recurse forever.
    """
    seen: set[Path] = set()

    def visit(directory: Path) -> Iterator[Path | InputProblem]:
        real = directory.resolve()
        if real in seen:
            return
        seen.add(real)
        try:
            entries = sorted(entry for entry in directory.iterdir() if not entry.name.startswith("."))
        except OSError as exc:
            yield InputProblem(directory, _one_line(f"cannot list folder ({type(exc).__name__}: {exc})"))
            return
        for entry in entries:
            if entry.is_dir():
                yield from visit(entry)
            else:
                yield entry

    yield from visit(folder)


def _reading_order(entries: list[Path | InputProblem]) -> list[Path | InputProblem]:
    """`entries` in walk order, except that each DICOM series comes out together and in slice order.

    A series is the set of DICOM files with one SeriesInstanceUID (files without one are grouped by
    folder). It is placed where its first file (by name) is, and sorted by, in this order of
    preference, provided every file of the series has the value:

    1. the position along the slice normal, ``dot(ImagePositionPatient, row x column)`` with the
       direction cosines from ImageOrientationPatient: the anatomical order (feet to head for axial
       slices), whatever the files are called;
    2. InstanceNumber, the scanner's own numbering;
    3. the file name (the walk order).

    Ties keep the file-name order (the sort is stable). Only the headers are read for this (no
    pixel data); a file whose header cannot be read stays where it is and is reported when decoded.
    """
    series: dict[tuple[str, str], list[tuple[Path, float | None, int | None]]] = {}
    first_of: dict[Path, tuple[str, str]] = {}
    for entry in entries:
        # is_file first: opening a named pipe to look for the DICM marker would block
        if isinstance(entry, Path) and entry.is_file() and _looks_like_dicom(entry):
            key = _sort_header(entry)
            if key is None:
                continue
            uid, position, instance = key
            group = (uid, "") if uid else ("", str(entry.parent))
            members = series.setdefault(group, [])
            if not members:
                first_of[entry] = group
            members.append((entry, position, instance))

    in_series = {path for members in series.values() for path, _, _ in members}
    ordered: list[Path | InputProblem] = []
    for entry in entries:
        if isinstance(entry, Path) and entry in first_of:
            ordered.extend(_sorted_series(series[first_of[entry]]))
        elif not (isinstance(entry, Path) and entry in in_series):
            ordered.append(entry)
    return ordered


def _sorted_series(members: list[tuple[Path, float | None, int | None]]) -> list[Path]:
    if all(position is not None for _, position, _ in members):
        return [path for path, _, _ in sorted(members, key=lambda member: member[1])]
    if all(instance is not None for _, _, instance in members):
        return [path for path, _, _ in sorted(members, key=lambda member: member[2])]
    return [path for path, _, _ in members]


def _sort_header(path: Path) -> tuple[str, float | None, int | None] | None:
    """(SeriesInstanceUID or "", position along the slice normal, InstanceNumber), or None if unreadable."""
    try:
        header = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            force=not _has_dicm_marker(path),
            specific_tags=["SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber"],
        )
        position = orientation = None
        if header.get("ImagePositionPatient") is not None and header.get("ImageOrientationPatient") is not None:
            position = np.asarray([float(v) for v in header.ImagePositionPatient], dtype=np.float64)
            orientation = np.asarray([float(v) for v in header.ImageOrientationPatient], dtype=np.float64)
        along_normal = None
        if position is not None and orientation is not None and position.size == 3 and orientation.size == 6:
            along_normal = float(np.dot(position, np.cross(orientation[:3], orientation[3:])))
        instance = header.get("InstanceNumber")
        return str(header.get("SeriesInstanceUID") or ""), along_normal, None if instance is None else int(instance)
    except Exception:  # any damage: leave the file in place; decoding it reports the problem
        return None


# --- files -----------------------------------------------------------------------------------


def _file_slices(path: Path, window: Window | None, axis: int) -> Iterator[ScanSlice | InputProblem]:
    """Dispatch on what the file is: DICOM marker, then NIfTI suffix, then ``.dcm`` suffix, else image."""
    if not path.exists():
        yield InputProblem(path, "no such file or folder (check the path; a broken link also shows as missing)")
    elif not path.is_file():
        yield InputProblem(path, "not a regular file or folder (a device, pipe or socket); pass image files or folders")
    elif _has_dicm_marker(path):
        yield from _dicom_slices(path, window)
    elif path.name.lower().endswith((".nii", ".nii.gz")):
        yield from _nifti_slices(path, window, axis)
    elif path.suffix.lower() == ".dcm":
        yield from _dicom_slices(path, window)
    else:
        yield _image_slice(path)


def _image_slice(path: Path) -> ScanSlice | InputProblem:
    try:
        return ScanSlice(path, None, read_image(path))
    except UnreadableImageError as exc:
        fmt = detected_format(path)
        if fmt is None:
            return InputProblem(
                path,
                "not an image, DICOM or NIfTI file (formats are detected from content; DICOM needs the "
                "DICM marker or a .dcm suffix, NIfTI a .nii or .nii.gz suffix)",
            )
        reason = f"cannot read {fmt} image ({exc.reason}); it may be corrupt or truncated, re-export it"
        return InputProblem(path, _one_line(reason))


def _has_dicm_marker(path: Path) -> bool:
    """True if the file has the Part 10 ``DICM`` marker after its 128-byte preamble."""
    try:
        with path.open("rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _looks_like_dicom(path: Path) -> bool:
    return path.suffix.lower() == ".dcm" or _has_dicm_marker(path)


# --- DICOM -----------------------------------------------------------------------------------

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_GRAYSCALE = {"MONOCHROME1", "MONOCHROME2"}
# pydicom's pixel_array returns these as RGB: YBR_FULL(_422) converted by pydicom (as_rgb, the
# default), YBR_ICT/YBR_RCT by the JPEG 2000 decoder.
_COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}


def _dicom_slices(path: Path, window: Window | None) -> Iterator[ScanSlice | InputProblem]:
    """One slice per frame; `slice_index` is None for a single-frame file (see the module docstring)."""
    try:
        ds = pydicom.dcmread(path, force=not _has_dicm_marker(path))
    except Exception as exc:  # pydicom raises many exception types on damaged files
        reason = f"cannot read DICOM file ({type(exc).__name__}: {exc}); it may be truncated, re-export it"
        yield InputProblem(path, _one_line(reason))
        return
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        yield InputProblem(path, _no_pixels_reason(ds))
        return
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric not in _GRAYSCALE | _COLOUR:
        yield InputProblem(
            path,
            f"DICOM PhotometricInterpretation {photometric or '(missing)'} is not supported "
            f"(supported: {', '.join(sorted(_GRAYSCALE | _COLOUR))}); export it as RGB or grayscale",
        )
        return
    try:
        pixels = np.asarray(ds.pixel_array)
        frame_count = int(ds.get("NumberOfFrames") or 1)
        frames = pixels if frame_count > 1 else pixels[np.newaxis]
        indices: list[int | None] = list(range(frame_count)) if frame_count > 1 else [None]
        if len(frames) != len(indices):
            raise ValueError(f"NumberOfFrames is {frame_count} but the pixel data holds {len(frames)} frames")
        if photometric in _COLOUR:
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(
                    f"colour pixel data of type {frames.dtype} and shape {frames.shape} (8-bit RGB expected)"
                )
            to_image = _colour_image
        else:
            to_image = _grayscale_converter(ds, frames, window, invert=photometric == "MONOCHROME1")
    except Exception as exc:  # decoders (and missing decoder plugins) raise many exception types
        yield InputProblem(path, _one_line(f"cannot decode DICOM pixel data ({type(exc).__name__}: {exc})"))
        return
    for number, (index, frame) in enumerate(zip(indices, frames)):
        yield ScanSlice(path, index, to_image(number, frame))


def _colour_image(_: int, frame: np.ndarray) -> Image.Image:
    """An RGB frame as an image; `to_canonical` makes a gray-in-RGB frame ``L``, as `read_image` does."""
    return to_canonical(Image.fromarray(frame))


def _grayscale_converter(
    ds: pydicom.Dataset, frames: np.ndarray, window: Window | None, *, invert: bool
) -> Callable[[int, np.ndarray], Image.Image]:
    """A function (frame number, stored frame) -> ``L`` image, with one window for the whole file.

    Rescale is per frame (enhanced files may vary it per frame); the window is the argument, else
    the file's tags, else the min..max of the modality values over all frames.
    """
    if frames.ndim != 3:
        raise ValueError(f"grayscale pixel data of shape {frames.shape} (frames, rows, columns expected)")
    rescale = [
        (
            float(_frame_value(ds, "RescaleSlope", "PixelValueTransformationSequence", number, default=1.0)),
            float(_frame_value(ds, "RescaleIntercept", "PixelValueTransformationSequence", number, default=0.0)),
        )
        for number in range(len(frames))
    ]

    def modality(number: int, frame: np.ndarray) -> np.ndarray:
        slope, intercept = rescale[number]
        return frame.astype(np.float64) * slope + intercept

    chosen = window if window is not None else _window_from_tags(ds)
    if chosen is not None:
        lower, width = chosen.lower, chosen.width
    else:
        ranges = [_finite_range(modality(number, frame)) for number, frame in enumerate(frames)]
        found = [r for r in ranges if r is not None]
        low = min((r[0] for r in found), default=0.0)
        high = max((r[1] for r in found), default=0.0)
        lower, width = low, high - low

    def convert(number: int, frame: np.ndarray) -> Image.Image:
        gray = _scale_to_uint8(modality(number, frame), lower, width)
        return Image.fromarray(255 - gray if invert else gray)

    return convert


def _window_from_tags(ds: pydicom.Dataset) -> Window | None:
    """The file's first WindowCenter/WindowWidth pair, or None if absent or invalid (width <= 0)."""
    center = _frame_value(ds, "WindowCenter", "FrameVOILUTSequence", 0)
    width = _frame_value(ds, "WindowWidth", "FrameVOILUTSequence", 0)
    if center is None or width is None:
        return None
    try:
        return Window(center=float(_first(center)), width=float(_first(width)))
    except (ConfigError, TypeError, ValueError, IndexError):
        return None


def _frame_value(ds: pydicom.Dataset, keyword: str, macro: str, frame: int, default: Any = None) -> Any:
    """`keyword` for `frame`: top level, else the frame's per-frame functional group, else the shared one.

    Classic files keep RescaleSlope or WindowCenter at the top level; enhanced multi-frame files
    keep them in ``<macro>`` items of the Per-Frame / Shared Functional Groups Sequences.
    """
    value = ds.get(keyword)
    if _present(value):
        return value
    for groups_keyword, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_keyword)
        if groups and index < len(groups):
            items = groups[index].get(macro)
            if items and _present(items[0].get(keyword)):
                return items[0].get(keyword)
    return default


def _present(value: Any) -> bool:
    """False for an absent element and for one that is present but empty (a common export quirk)."""
    return value is not None and value != ""


def _first(value: Any) -> Any:
    """The first of a multi-valued element (WindowCenter "40\\400" -> 40), or the value itself."""
    return value[0] if isinstance(value, (list, tuple, MultiValue)) else value


def _no_pixels_reason(ds: pydicom.Dataset) -> str:
    file_meta = getattr(ds, "file_meta", None)
    sop_class = ds.get("SOPClassUID") or (file_meta.get("MediaStorageSOPClassUID") if file_meta is not None else None)
    if not sop_class:
        return "corrupt DICOM file: no readable header and no pixel data (damaged or truncated?); re-export it"
    name = getattr(sop_class, "name", str(sop_class))
    return _one_line(
        f"DICOM file has no pixel data ({name}: a report, index or other non-image object); nothing to score"
    )


# --- NIfTI -----------------------------------------------------------------------------------


def _nifti_slices(path: Path, window: Window | None, axis: int) -> Iterator[ScanSlice | InputProblem]:
    """One ``L`` slice per index along `axis`; the slice ``s`` is shown as ``np.rot90(s)``.

    ``np.rot90`` turns the 2-D slice a quarter counter-clockwise: ``image[r, c] = s[c, n - 1 - r]``
    with ``n = s.shape[1]``. So the slice's first array axis runs left to right across the image and
    its second runs bottom to top, exactly what ``imshow(s.T, origin="lower")`` shows. For an axial
    slice of an RAS-stored volume (the common case) that puts anterior at the top and the patient's
    right on the image's right (neurological convention; DICOM viewers show the radiological one,
    so the same scan read from DICOM can come out mirrored left to right). For axis 2,
    voxel ``(i, j, k)`` lands in slice ``k`` at row ``shape[1] - 1 - j``, column ``i``. The volume is
    not reoriented: axes are those of the array as stored.
    """
    try:
        volume = nib.load(path).get_fdata(dtype=np.float64)
    except Exception as exc:  # nibabel, gzip and zlib raise many exception types on damaged files
        reason = f"cannot read NIfTI file ({type(exc).__name__}: {exc}); it may be truncated, re-export it"
        yield InputProblem(path, _one_line(reason))
        return
    stored_shape = volume.shape
    while volume.ndim > 3 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim == 4:
        yield InputProblem(
            path,
            f"4-D NIfTI with {volume.shape[3]} volumes (shape {stored_shape}); split it into 3-D volumes "
            "(e.g. fslsplit or nibabel.four_to_three) and pass those",
        )
        return
    if volume.ndim not in (2, 3) or 0 in volume.shape:
        yield InputProblem(path, f"NIfTI of shape {stored_shape} is neither a 2-D image nor a 3-D volume")
        return
    if window is not None:
        lower, width = window.lower, window.width
    else:
        low, high = _finite_range(volume) or (0.0, 0.0)
        lower, width = low, high - low
    if volume.ndim == 2:
        yield ScanSlice(path, None, Image.fromarray(_scale_to_uint8(np.rot90(volume), lower, width)))
        return
    for index in range(volume.shape[axis]):
        plane = np.rot90(np.take(volume, index, axis=axis))
        yield ScanSlice(path, index, Image.fromarray(_scale_to_uint8(plane, lower, width)))


# --- shared ----------------------------------------------------------------------------------


def _scale_to_uint8(values: np.ndarray, lower: float, width: float) -> np.ndarray:
    """``rint(clip((v - lower) / width, 0, 1) * 255)``; NaN -> 0, and all 0 when `width` <= 0 (a constant image)."""
    if width <= 0:
        return np.zeros(values.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        scaled = np.clip((values - lower) / width, 0.0, 1.0) * 255.0
    return np.ascontiguousarray(np.rint(np.nan_to_num(scaled, nan=0.0)).astype(np.uint8))


def _finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values, or None if there are none."""
    finite = np.isfinite(values)
    if finite.all():
        return float(values.min()), float(values.max())
    if not finite.any():
        return None
    kept = values[finite]
    return float(kept.min()), float(kept.max())


def _one_line(text: str) -> str:
    """Collapse whitespace, since reasons go into one CSV cell and library messages span lines."""
    return " ".join(text.split())
