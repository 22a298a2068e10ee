"""Turn whatever a clinician-researcher hands ``pdd predict`` into 2-D 8-bit images to score.

People bring files from three worlds, and each has its own rule here:

* **Ordinary images** (PNG, JPEG, BMP, TIFF; detected from content, as everywhere in pdd) go
  through `pdd.data.images.read_image` unchanged, so predicting on a prepared dataset's PNGs gives
  exactly the pixels the evaluation saw. A `window` does not apply to them: they are already
  display images.
* **DICOM** files, as exported from a PACS or viewer: one file per slice, often without a suffix
  (recognised by the ``DICM`` marker at byte 128, or by a ``.dcm`` suffix), or one multi-frame file.
  Pixels are decoded and displayed by pydicom's own pipeline (`pydicom.pixels`), the standard's
  grayscale chain (PS3.3 C.11, PS3.4 N.2.1.1): the Modality LUT (``RescaleSlope``/``RescaleIntercept``,
  i.e. HU for CT, or a Modality LUT Sequence), then the VOI transform onto 8 bits, then MONOCHROME1
  inverted (white is low). The VOI transform is the `window` argument (DICOM's LINEAR function,
  ``((v - (c - 0.5)) / (w - 1) + 0.5)``), else the file's own: its VOI LUT Sequence, else its first
  WindowCenter/WindowWidth with its VOILUTFunction (LINEAR, LINEAR_EXACT or SIGMOID), else a
  min..max stretch over the whole file (all frames together, so the frames of one file stay
  comparable). Enhanced (multi-frame) CT/MR keep rescale and window in functional-group sequences;
  those are looked up per frame. Compressed transfer syntaxes are decoded by the plugins pdd
  installs (pylibjpeg with libjpeg and openjpeg; Pillow; pydicom's RLE); a file no installed
  plugin can decode is reported with its transfer syntax and the packages that would. Colour
  files (RGB, and YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT, which pydicom returns as RGB)
  become RGB images without windowing; other photometric interpretations (PALETTE COLOR,
  YBR_PARTIAL_*) are reported rather than guessed at, and so are objects whose pixels are no
  picture of the patient (RT dose grids, segmentations).
* **NIfTI** volumes (``.nii``, ``.nii.gz``), as produced by research pipelines such as dcm2niix:
  read through nibabel in its closest canonical orientation (RAS+, what `nib.as_closest_canonical`
  gives), one slice at a time from the image's data object (``scl_slope``/``scl_inter`` applied;
  the volume is never held whole in memory), so a volume stored LAS and the same volume stored RAS
  give the same slices. `axis` is an axis of that RAS volume (0 sagittal, 1 coronal, 2 axial), and
  each slice is shown as a DICOM viewer shows that plane (see `_nifti_slices`). The window is the
  `window` argument (the same LINEAR function as for DICOM), else the file's own display range
  (``cal_min``/``cal_max``), else a min..max stretch over the whole volume (not per slice, so an
  almost empty top slice does not get its noise stretched to full contrast). A 4-D file holding
  several volumes is a problem to report (split it first).
* **Folders** are walked recursively in sorted order, skipping hidden entries; the DICOM files of
  one series come out in anatomical order (see `_reading_order`).

Every window goes through pydicom's `apply_windowing` onto an 8-bit output range and is rounded
half to even; the min..max stretch is the window of LINEAR_EXACT centred on the range
(``(v - min) / (max - min)``); non-finite values (NaN in masked NIfTI) become 0. Grayscale output is
mode ``L``.

Anything that cannot be scored (a missing path, a text file named ``.png``, a truncated DICOM, a
DICOM without pixels or without a decoder, an unreadable NIfTI, an empty folder) is yielded as an
`InputProblem` with a one-line reason, never raised and never skipped silently: the caller writes
it to errors.csv and carries on with the next input.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from nibabel.orientations import apply_orientation, io_orientation
from nibabel.volumeutils import apply_read_scaling
from PIL import Image
from pydicom import uid
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, get_decoder

from pdd.data.images import UnreadableImageError, detected_format, read_image, to_canonical
from pdd.errors import ConfigError

log = logging.getLogger(__name__)


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
    """A display window in modality units (HU for CT), applied with DICOM's LINEAR VOI function.

    `center` maps to mid-grey and `width` to the full range: ``v <= c - 0.5 - (w - 1) / 2`` is black,
    ``v > c - 0.5 + (w - 1) / 2`` white, linear between (PS3.3 C.11.2.1.2.1, which needs ``w >= 1``).
    """

    center: float
    width: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width) and self.width >= 1):
            raise ConfigError(
                f"window center must be finite and width >= 1 (DICOM's linear window), got center={self.center}, "
                f"width={self.width}"
            )


#: Standard head-CT windows from Radiopaedia's "Windowing (CT)" article (head and neck presets):
#: brain W:80 L:40; subdural W:130-300 L:50-100, of which we take the middle (C 75, W 215);
#: bone is the temporal-bone window W:2800 L:600, which shows fine skull detail.
WINDOW_PRESETS: dict[str, Window] = {
    "brain": Window(center=40, width=80),
    "subdural": Window(center=75, width=215),
    "bone": Window(center=600, width=2800),
}
#: `--window file`: each file's own VOI (DICOM) or display range (NIfTI), as `iter_scan_slices(window=None)`.
FILE_WINDOW = "file"


def parse_window(text: str) -> Window | None:
    """A `Window` from a preset name or ``"C,W"`` (e.g. ``"40,80"``, ``"-600,1500"``); ``"file"`` gives None,
    which `iter_scan_slices` reads as "each file's own window"."""
    key = text.strip().lower()
    if key == FILE_WINDOW:
        return None
    if key in WINDOW_PRESETS:
        return WINDOW_PRESETS[key]
    choices = (f"use one of {', '.join(WINDOW_PRESETS)}, {FILE_WINDOW} (each file's own window), or 'center,width' "
               "in modality units (HU for CT) such as '40,80'")
    parts = key.split(",")
    if len(parts) != 2:
        raise ConfigError(f"window {text!r} is not recognised: {choices}")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"window {text!r} is not recognised: {choices}") from None
    if not (math.isfinite(center) and math.isfinite(width) and width >= 1):
        raise ConfigError(f"window {text!r} needs a finite center and a width >= 1: {choices}")
    return Window(center=center, width=width)


def iter_scan_slices(
    inputs: Sequence[str | Path], *, window: Window | None = None, axis: int = 2
) -> Iterator[ScanSlice | InputProblem]:
    """Every 2-D image in `inputs` (files and folders, in the order given), or the problem with each.

    Lazy: a file is read when the iteration reaches it, and a NIfTI volume's slices are read one at
    a time (a folder's DICOM headers, without pixels, are read when the folder is reached, to put
    its series in order). `window` replaces each DICOM file's VOI and each NIfTI file's display range;
    None keeps each file's own. `axis` (0, 1 or 2 of the NIfTI volume in RAS orientation) is the one
    slices are taken along. Both are checked here, before iteration, so a bad option fails at once
    instead of after the first file.
    """
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2 (sagittal, coronal, axial: an axis of the RAS volume), got {axis!r}")
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
# Objects with pixel data that are no picture of the patient: a model of images would score noise.
_NOT_PICTURES = {
    uid.RTDoseStorage: "an RT dose grid (radiation dose per voxel)",
    uid.SegmentationStorage: "a segmentation (labels drawn on another image)",
}
# Where enhanced multi-frame files keep, per frame, what classic files keep at the top level.
_FUNCTIONAL_GROUP = {
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
    "WindowCenter": "FrameVOILUTSequence",
    "WindowWidth": "FrameVOILUTSequence",
    "VOILUTFunction": "FrameVOILUTSequence",
}
# What pydicom's Modality LUT and VOI functions read; copied into a per-frame view of the dataset.
_GRAYSCALE_KEYWORDS = ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "ModalityLUTSequence",
                       "VOILUTSequence", *_FUNCTIONAL_GROUP)


def _dicom_slices(path: Path, window: Window | None) -> Iterator[ScanSlice | InputProblem]:
    """One slice per frame; `slice_index` is None for a single-frame file (see the module docstring)."""
    try:
        ds = pydicom.dcmread(path, force=not _has_dicm_marker(path))
    except Exception as exc:  # pydicom raises many exception types on damaged files
        reason = f"cannot read DICOM file ({type(exc).__name__}: {exc}); it may be truncated, re-export it"
        yield InputProblem(path, _one_line(reason))
        return
    problem = _unscorable_reason(ds)
    if problem is not None:
        yield InputProblem(path, problem)
        return
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    try:
        pixels = np.asarray(ds.pixel_array)
        frame_count = int(ds.get("NumberOfFrames") or 1)
        frames = pixels if frame_count > 1 else pixels[np.newaxis]
        indices: list[int | None] = list(range(frame_count)) if frame_count > 1 else [None]
        if len(frames) != len(indices):
            raise ValueError(f"NumberOfFrames is {frame_count} but the pixel data holds {len(frames)} frames")
        if photometric in _COLOUR:
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"colour pixel data of type {frames.dtype} and shape {frames.shape} (RGB expected)")
            to_image = _colour_image
        else:
            to_image = _grayscale_converter(ds, frames, window)
    except Exception as exc:  # decoders raise many exception types on damaged data
        syntax = _transfer_syntax(ds)
        where = f" ({syntax.name})" if syntax is not None else ""
        reason = f"cannot decode DICOM pixel data{where} ({type(exc).__name__}: {exc}); it may be damaged, re-export it"
        yield InputProblem(path, _one_line(reason))
        return
    for number, (index, frame) in enumerate(zip(indices, frames)):
        try:
            image = to_image(number, frame)
        except Exception as exc:  # pydicom's LUT and window functions refuse what the standard does not define
            reason = (f"cannot display DICOM frame {number} ({type(exc).__name__}: {exc}); fix its VOI attributes "
                      "or re-export it")
            yield InputProblem(path, _one_line(reason))
            return
        yield ScanSlice(path, index, image)


def _unscorable_reason(ds: pydicom.Dataset) -> str | None:
    """Why `ds` has nothing to score before any pixel is decoded, or None: no pixels, an object that is no
    picture (RT dose, segmentation), a photometric interpretation pdd does not read, no decoder installed."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        return _no_pixels_reason(ds)
    sop_class = _sop_class(ds)
    if sop_class in _NOT_PICTURES:
        return (f"DICOM {sop_class.name} object: {_NOT_PICTURES[sop_class]}, not an image of the patient; "
                "nothing to score")
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if not photometric:
        return ("DICOM pixel data without a PhotometricInterpretation: its Image Pixel module is incomplete "
                "(a damaged or non-standard export); re-export it")
    if photometric not in _GRAYSCALE | _COLOUR:
        return (f"DICOM PhotometricInterpretation {photometric} is not supported "
                f"(supported: {', '.join(sorted(_GRAYSCALE | _COLOUR))}); export it as RGB or grayscale")
    if photometric in _COLOUR and ds.get("BitsAllocated") != 8:
        return (f"{ds.get('BitsAllocated')}-bit colour DICOM ({photometric}) is not supported; export it as 8-bit "
                "colour or as grayscale")
    return _missing_decoder_reason(ds)


def _missing_decoder_reason(ds: pydicom.Dataset) -> str | None:
    """The transfer syntax and what would decode it, when no installed plugin can (pydicom's own list)."""
    syntax = _transfer_syntax(ds)
    if syntax is None or "PixelData" not in ds:  # float pixel data is never compressed
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return (f"pixel data in transfer syntax {syntax.name} ({syntax}), which pydicom cannot decode (video or "
                "private compression); export the images uncompressed, or as JPEG 2000 or JPEG Lossless")
    if decoder.is_available:
        return None
    return _one_line(
        f"no decoder installed for transfer syntax {syntax.name} ({syntax}); install one of: "
        f"{'; '.join(decoder.missing_dependencies)} (pdd's own dependencies include pylibjpeg, pylibjpeg-libjpeg "
        "and pylibjpeg-openjpeg: reinstall pdd)"
    )


def _transfer_syntax(ds: pydicom.Dataset) -> uid.UID | None:
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    return uid.UID(str(syntax)) if syntax else None


def _sop_class(ds: pydicom.Dataset) -> uid.UID | None:
    file_meta = getattr(ds, "file_meta", None)
    sop_class = ds.get("SOPClassUID") or (file_meta.get("MediaStorageSOPClassUID") if file_meta is not None else None)
    return uid.UID(str(sop_class)) if sop_class else None


def _colour_image(_: int, frame: np.ndarray) -> Image.Image:
    """An RGB frame as an image; `to_canonical` makes a gray-in-RGB frame ``L``, as `read_image` does."""
    return to_canonical(Image.fromarray(frame))


def _grayscale_converter(
    ds: pydicom.Dataset, frames: np.ndarray, window: Window | None
) -> Callable[[int, np.ndarray], Image.Image]:
    """A function (frame number, stored frame) -> ``L`` image through pydicom's grayscale pipeline.

    Modality LUT and VOI are per frame (enhanced files may vary them per frame). Without `window`
    and without VOI attributes, the stretch spans the modality values of all frames.
    """
    if frames.ndim != 3:
        raise ValueError(f"grayscale pixel data of shape {frames.shape} (frames, rows, columns expected)")
    views = [_frame_view(ds, number) for number in range(len(frames))]
    invert = str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1"

    def modality(number: int, frame: np.ndarray) -> np.ndarray:
        return apply_modality_lut(frame, views[number])

    value_range = None  # the stretch, needed only if some frame has no VOI of its own
    if window is None and not all(_has_voi(view) for view in views):
        value_range = _combined_range(_finite_range(modality(number, frame)) for number, frame in enumerate(frames))

    def convert(number: int, frame: np.ndarray) -> Image.Image:
        values, view = modality(number, frame), views[number]
        if window is not None:
            gray = _window_to_uint8(values, window.center, window.width)
        elif view.get("VOILUTSequence"):
            gray = _voi_lut(values, view)
        elif _has_voi(view):
            gray = _window_to_uint8(values, _first(view.WindowCenter), _first(view.WindowWidth),
                                    str(view.get("VOILUTFunction") or "LINEAR"))
        else:
            gray = _stretch_to_uint8(values, value_range)
        return Image.fromarray(255 - gray if invert else gray)

    return convert


def _frame_view(ds: pydicom.Dataset, frame: int) -> pydicom.Dataset:
    """The attributes pydicom's Modality LUT and VOI functions read, as they apply to `frame`.

    Classic files keep RescaleSlope or WindowCenter at the top level; enhanced multi-frame files
    keep them in ``<macro>`` items of the Per-Frame, else Shared, Functional Groups Sequence. An
    element present but empty (a common export quirk) counts as absent.
    """
    view = pydicom.Dataset()
    if getattr(ds, "file_meta", None) is not None:
        view.file_meta = ds.file_meta  # the byte order of OW lookup tables
    view.set_original_encoding(*ds.original_encoding)
    for keyword in _GRAYSCALE_KEYWORDS:
        element = _frame_element(ds, keyword, _FUNCTIONAL_GROUP.get(keyword), frame)
        if element is not None:
            view[element.tag] = element
    return view


def _frame_element(ds: pydicom.Dataset, keyword: str, macro: str | None, frame: int) -> Any:
    if _present(ds.get(keyword)):
        return ds[keyword]
    if macro is None:
        return None
    for groups_keyword, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_keyword)
        if groups and index < len(groups):
            items = groups[index].get(macro)
            if items and _present(items[0].get(keyword)):
                return items[0][keyword]
    return None


def _has_voi(view: pydicom.Dataset) -> bool:
    """A VOI LUT Sequence, or a window whose width the standard allows (a width <= 0 is an export error)."""
    if view.get("VOILUTSequence"):
        return True
    if not (_present(view.get("WindowCenter")) and _present(view.get("WindowWidth"))):
        return False
    width = _first(view.WindowWidth)
    return width >= 1 if str(view.get("VOILUTFunction") or "LINEAR").strip().upper() == "LINEAR" else width > 0


def _voi_lut(values: np.ndarray, view: pydicom.Dataset) -> np.ndarray:
    """The first VOI LUT of the file, its output (``0 .. 2**bits - 1``, bits from the LUT Descriptor) onto 0..255.

    A LUT is indexed by integer modality values, so rescaled (float) values are rounded first."""
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int64)
    bits = int(view.VOILUTSequence[0].LUTDescriptor[2])
    return _to_uint8(apply_voi(values, view).astype(np.float64) * (255.0 / (2**bits - 1)))


def _first(value: Any) -> float:
    """The first of a multi-valued element (WindowCenter "40\\400" -> 40), or the value itself."""
    return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)


def _present(value: Any) -> bool:
    """False for an absent element and for one that is present but empty (a common export quirk)."""
    return value is not None and value != ""


def _no_pixels_reason(ds: pydicom.Dataset) -> str:
    sop_class = _sop_class(ds)
    if not sop_class:
        return "corrupt DICOM file: no readable header and no pixel data (damaged or truncated?); re-export it"
    if "Image" in sop_class.name:
        return _one_line(f"DICOM {sop_class.name} file without pixel data (a header-only copy?); export it with "
                         "its pixels")
    return _one_line(
        f"DICOM file has no pixel data ({sop_class.name}: a report, index or other non-image object); nothing to score"
    )


# --- NIfTI -----------------------------------------------------------------------------------


def _nifti_slices(path: Path, window: Window | None, axis: int) -> Iterator[ScanSlice | InputProblem]:
    """One ``L`` slice per index along `axis` of the RAS volume, each shown as a DICOM viewer shows that plane.

    The slice ``s`` (its two axes in RAS order) is shown as ``np.flip(s.T)``: ``image[r, c] =
    s[n0 - 1 - c, n1 - 1 - r]``. So the top of the image is anterior (axial) or superior (coronal,
    sagittal), and its left is the patient's right (axial, coronal) or anterior (sagittal): the
    radiological convention of DICOM viewers, in which a dcm2niix volume's slices look like the DICOM
    series it came from. Slice 0 is the most left, posterior or inferior one.
    """
    try:
        volume = _RASVolume(nib.load(path), compressed=path.name.lower().endswith(".gz"))
    except _NiftiShapeError as exc:
        yield InputProblem(path, str(exc))
        return
    except Exception as exc:  # nibabel, gzip and zlib raise many exception types on damaged files
        yield InputProblem(path, _nifti_reading_problem(exc))
        return
    indices: list[int | None] = [None] if volume.flat_axis is not None else list(range(volume.shape[axis]))
    plane_axis = axis if volume.flat_axis is None else volume.flat_axis
    try:
        if window is not None:
            def to_gray(plane: np.ndarray) -> np.ndarray:
                return _window_to_uint8(plane, window.center, window.width)
        else:
            value_range = volume.display_range() or volume.finite_range()

            def to_gray(plane: np.ndarray) -> np.ndarray:
                return _stretch_to_uint8(plane, value_range)

        for index in indices:
            plane = volume.plane(plane_axis, 0 if index is None else index)
            yield ScanSlice(path, index, Image.fromarray(to_gray(np.flip(plane.T))))
    except Exception as exc:  # a file cut short fails when its slice is read
        yield InputProblem(path, _nifti_reading_problem(exc))


class _NiftiShapeError(ValueError):
    """A readable NIfTI file that is no 2-D image or 3-D volume; the message is the problem's reason."""


class _RASVolume:
    """A NIfTI image read in its closest canonical orientation (RAS+), one slice at a time.

    The reorientation is `nib.as_closest_canonical`'s (the stored axes permuted and flipped by
    `io_orientation(affine)`), applied by `apply_orientation` to a one-slice slab at a time, so no
    reoriented or float copy of the volume is made. An uncompressed file is memory-mapped and each slab
    read from it; a gzip stream has no random access (reading slice k would decompress everything
    before it, again for every slice), so a ``.nii.gz`` is decompressed once into memory in its stored
    type (int16 for most CT: a quarter of float64) and each slab scaled on its own. A 2-D image is a
    volume one slice thick (`flat_axis` is then the RAS axis of that one slice).
    """

    def __init__(self, image: Any, compressed: bool) -> None:
        stored = tuple(int(n) for n in image.shape)
        dims = list(stored)
        while len(dims) > 3 and dims[-1] == 1:
            dims.pop()
        if len(dims) == 4:
            raise _NiftiShapeError(
                f"4-D NIfTI with {dims[3]} volumes (shape {stored}); split it into 3-D volumes "
                "(e.g. fslsplit or nibabel.four_to_three) and pass those")
        if len(dims) not in (2, 3) or 0 in dims:
            raise _NiftiShapeError(f"NIfTI of shape {stored} is neither a 2-D image nor a 3-D volume")
        self.header, self.stored_ndim = image.header, len(stored)
        self.stored_shape = (*dims, 1) if len(dims) == 2 else tuple(dims)
        proxy = image.dataobj
        if compressed:
            unscaled = np.asanyarray(proxy.get_unscaled())
            self._values = lambda index: apply_read_scaling(unscaled[index], proxy.slope, proxy.inter)
        else:
            self._values = lambda index: np.asanyarray(proxy[index])
        to_ras = io_orientation(image.affine)
        if np.isnan(to_ras).any():  # an affine with a zero column: nothing to reorient by
            log.warning("%s: the affine has no orientation for every axis; its slices are taken as stored",
                        image.get_filename())
            to_ras = np.column_stack([np.arange(3), np.ones(3)])
        self.to_ras = to_ras.astype(int)
        self.shape = tuple(self.stored_shape[int(np.flatnonzero(self.to_ras[:, 0] == ras)[0])] for ras in range(3))
        self.flat_axis = int(self.to_ras[2, 0]) if len(dims) == 2 else None

    def plane(self, axis: int, index: int) -> np.ndarray:
        """Slice `index` along RAS axis `axis`: a 2-D float64 array, its axes the other two in RAS order."""
        stored_axis = int(np.flatnonzero(self.to_ras[:, 0] == axis)[0])
        if self.to_ras[stored_axis, 1] < 0:
            index = self.stored_shape[stored_axis] - 1 - index
        slab = [slice(None)] * 3
        slab[stored_axis] = slice(index, index + 1)
        return np.take(apply_orientation(self._read(slab), self.to_ras), 0, axis=axis).astype(np.float64)

    def finite_range(self) -> tuple[float, float] | None:
        """(min, max) of the finite values of the whole volume, read slab by slab along the last stored axis
        (contiguous in the file)."""
        return _combined_range(_finite_range(self._read([slice(None), slice(None), slice(k, k + 1)]))
                               for k in range(self.stored_shape[2]))

    def display_range(self) -> tuple[float, float] | None:
        """The file's own display range (``cal_min``..``cal_max``), when it sets one."""
        low, high = (float(self.header.get(key, 0) or 0) for key in ("cal_min", "cal_max"))
        return (low, high) if math.isfinite(low) and math.isfinite(high) and high > low else None

    def _read(self, slab: list[slice]) -> np.ndarray:
        """The values of `slab` (three slices) with scl_slope/scl_inter applied, as a 3-D array."""
        if self.stored_ndim == 2:
            return self._values(tuple(slab[:2]))[..., np.newaxis]
        return self._values((*slab, *[0] * (self.stored_ndim - 3)))


def _nifti_reading_problem(exc: Exception) -> str:
    return _one_line(f"cannot read NIfTI file ({type(exc).__name__}: {exc}); it may be truncated, re-export it")


# --- windows ---------------------------------------------------------------------------------


def _window_to_uint8(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """`values` through the VOI window (`function`: LINEAR, LINEAR_EXACT or SIGMOID) onto 0..255.

    pydicom's `apply_windowing` computes the standard's formulas; given a VOI module of 8 unsigned
    bits without rescale, its output range is exactly 0..255."""
    voi = pydicom.Dataset()
    voi.PhotometricInterpretation, voi.BitsStored, voi.PixelRepresentation = "MONOCHROME2", 8, 0
    voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = float(center), float(width), function.strip().upper()
    with np.errstate(invalid="ignore", over="ignore"):
        return _to_uint8(apply_windowing(np.asarray(values, dtype=np.float64), voi))


def _stretch_to_uint8(values: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """``(v - min) / (max - min)`` onto 0..255 (LINEAR_EXACT centred on the range); all 0 for a constant image."""
    if value_range is None or value_range[1] <= value_range[0]:
        return np.zeros(np.shape(values), dtype=np.uint8)
    low, high = value_range
    return _window_to_uint8(values, (low + high) / 2, high - low, "LINEAR_EXACT")


def _to_uint8(display: np.ndarray) -> np.ndarray:
    """0..255 floats rounded half to even; NaN -> 0."""
    return np.ascontiguousarray(np.rint(np.clip(np.nan_to_num(display, nan=0.0), 0.0, 255.0)).astype(np.uint8))


def _finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values, or None if there are none."""
    finite = np.isfinite(values)
    if finite.all():
        return float(values.min()), float(values.max())
    if not finite.any():
        return None
    kept = values[finite]
    return float(kept.min()), float(kept.max())


def _combined_range(ranges: Iterable[tuple[float, float] | None]) -> tuple[float, float] | None:
    """The range spanning every range that is not None (None if none is)."""
    found = [r for r in ranges if r is not None]
    return (min(r[0] for r in found), max(r[1] for r in found)) if found else None


def _one_line(text: str) -> str:
    """Collapse whitespace, since reasons go into one CSV cell and library messages span lines."""
    return " ".join(text.split())
