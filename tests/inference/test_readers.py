"""The decoding rules of `pdd.inference.readers`, checked against pixel values worked out by hand.

Every window expectation below is DICOM's LINEAR VOI function onto 8 bits (PS3.3 C.11.2.1.2.1) for
modality value ``v``: 0 for ``v <= C - 0.5 - (W - 1)/2``, 255 for ``v > C - 0.5 + (W - 1)/2``, else
``round_half_even(((v - (C - 0.5)) / (W - 1) + 0.5) * 255)``, with the arithmetic written next to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pdd.data.images import read_image
from pdd.errors import ConfigError
from pdd.inference.readers import (
    WINDOW_PRESETS,
    InputProblem,
    ScanSlice,
    Window,
    count_inputs,
    iter_scan_slices,
    parse_window,
)

# --- helpers ---------------------------------------------------------------------------------


def write_dicom(
    path: Path, stored: np.ndarray, *, photometric: str = "MONOCHROME2", preamble: bool = True, **tags
) -> Path:
    """A minimal uncompressed DICOM file; `stored` is (rows, cols[, 3]) or (frames, rows, cols)."""
    stored = np.asarray(stored)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    colour = not photometric.startswith("MONOCHROME")
    plane_shape = stored.shape[:-1] if colour else stored.shape
    if len(plane_shape) == 3:
        ds.NumberOfFrames = plane_shape[0]
    ds.Rows, ds.Columns = plane_shape[-2:]
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes()
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.preamble = None
        pydicom.dcmwrite(path, ds, enforce_file_format=False)
    return path


def write_nifti(path: Path, volume: np.ndarray, *, slope: float | None = None, inter: float | None = None,
                affine: np.ndarray | None = None) -> Path:
    image = nib.Nifti1Image(volume, np.eye(4) if affine is None else affine)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    image.to_filename(str(path))
    return path


def scan(*inputs, **options) -> list[ScanSlice | InputProblem]:
    return list(iter_scan_slices(list(inputs), **options))


def only_slice(*inputs, **options) -> ScanSlice:
    (item,) = scan(*inputs, **options)
    assert isinstance(item, ScanSlice), item
    return item


def pixels(item: ScanSlice) -> np.ndarray:
    return np.asarray(item.image)


def problems(items) -> list[InputProblem]:
    return [item for item in items if isinstance(item, InputProblem)]


# HU values laid out in a 2x4 CT frame; stored = (HU + 1024) / 2 for RescaleSlope 2, RescaleIntercept -1024.
CT_HU = np.array([[-1000, 0, 20, 40], [60, 80, 600, 2000]])
CT_STORED = ((CT_HU + 1024) // 2).astype(np.int16)


def ct_file(tmp_path: Path) -> Path:
    # Two windows in the tags: the first (brain, C 40 W 80) must be used, not (C 400, W 2000).
    return write_dicom(
        tmp_path / "ct.dcm",
        CT_STORED,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=[40, 400],
        WindowWidth=[80, 2000],
    )


# --- DICOM -----------------------------------------------------------------------------------


def test_ct_rescale_then_first_window_of_the_tags(tmp_path):
    item = only_slice(ct_file(tmp_path))
    assert item.image.mode == "L" and item.slice_index is None and item.name == "ct.dcm"
    # brain window: C - 0.5 = 39.5, W - 1 = 79; black at v <= 0, white at v > 79
    expected = [
        [0, 0, 65, 129],  # (20 - 39.5)/79 + 0.5 = 0.25316 -> 64.56 -> 65; (40 - 39.5)/79 + 0.5 -> 129.11 -> 129
        [194, 255, 255, 255],  # (60 - 39.5)/79 + 0.5 = 0.75949 -> 193.67 -> 194; 80 and above: 255
    ]
    np.testing.assert_array_equal(pixels(item), expected)


def test_window_argument_overrides_the_tags(tmp_path):
    item = only_slice(ct_file(tmp_path), window=parse_window("bone"))
    # bone window C 600 W 2800: C - 0.5 = 599.5, W - 1 = 2799; black at v <= -800, white at v > 1999
    # 0: (0 - 599.5)/2799 + 0.5 = 0.28582 -> 72.88 -> 73; 20 -> 74.71 -> 75; 40 -> 76.53 -> 77; 60 -> 78.35 -> 78;
    # 80 -> 80.17 -> 80; 600 -> 127.55 -> 128; 2000 > 1999 -> 255
    expected = [[0, 73, 75, 77], [78, 80, 128, 255]]
    np.testing.assert_array_equal(pixels(item), expected)


def test_without_rescale_tags_the_stored_values_are_windowed(tmp_path):
    stored = np.array([[0, 20, 40, 100]], dtype=np.uint16)
    item = only_slice(write_dicom(tmp_path / "mr.dcm", stored, WindowCenter=40, WindowWidth=80))
    np.testing.assert_array_equal(pixels(item), [[0, 65, 129, 255]])  # 20 -> 64.56, 40 -> 129.11 (see the CT test)


def test_without_window_tags_the_frame_is_stretched_min_to_max(tmp_path):
    stored = np.array([[100, 200, 300, 500]], dtype=np.int16)
    item = only_slice(write_dicom(tmp_path / "x.dcm", stored, RescaleSlope=1, RescaleIntercept=-100))
    # values 0, 100, 200, 400 stretched over 0..400: 100/400*255 = 63.75 -> 64; 200/400*255 = 127.5 -> 128
    np.testing.assert_array_equal(pixels(item), [[0, 64, 128, 255]])


def test_constant_frame_without_window_is_black(tmp_path):
    item = only_slice(write_dicom(tmp_path / "flat.dcm", np.full((4, 4), 700, np.uint16)))
    np.testing.assert_array_equal(pixels(item), np.zeros((4, 4), np.uint8))


def test_monochrome1_is_inverted_after_windowing(tmp_path):
    stored = np.array([[0, 50, 100, 200]], dtype=np.uint16)
    path = write_dicom(tmp_path / "cr.dcm", stored, photometric="MONOCHROME1", WindowCenter=100, WindowWidth=200)
    # C - 0.5 = 99.5, W - 1 = 199: 0 -> 0 -> 255; (50 - 99.5)/199 + 0.5 = 0.25126 -> 64.07 -> 64 -> 191;
    # (100 - 99.5)/199 + 0.5 -> 128.14 -> 128 -> 127; 200 > 199 -> 255 -> 0
    np.testing.assert_array_equal(pixels(only_slice(path)), [[255, 191, 127, 0]])


def test_multiframe_gives_one_slice_per_frame_stretched_over_the_whole_file(tmp_path):
    frames = np.zeros((3, 2, 2), np.uint16)
    frames[1] = 100  # constant frame: a per-frame stretch would make it black
    frames[2] = [[200, 200], [200, 400]]
    items = scan(write_dicom(tmp_path / "cine.dcm", frames))
    assert [item.slice_index for item in items] == [0, 1, 2]
    assert [item.name for item in items] == ["cine.dcm[slice 0]", "cine.dcm[slice 1]", "cine.dcm[slice 2]"]
    # whole-file range 0..400: 100/400*255 = 63.75 -> 64; 200/400*255 = 127.5 -> 128
    np.testing.assert_array_equal(pixels(items[0]), [[0, 0], [0, 0]])
    np.testing.assert_array_equal(pixels(items[1]), [[64, 64], [64, 64]])
    np.testing.assert_array_equal(pixels(items[2]), [[128, 128], [128, 255]])


def test_multiframe_uses_one_tag_window_for_every_frame(tmp_path):
    frames = np.stack([np.full((2, 2), 20, np.int16), np.full((2, 2), 60, np.int16), np.full((2, 2), 90, np.int16)])
    items = scan(write_dicom(tmp_path / "f.dcm", frames, WindowCenter=40, WindowWidth=80))
    # brain window: 20 -> 64.56 -> 65; 60 -> 193.67 -> 194; 90 > 79 -> 255
    assert [int(pixels(item)[0, 0]) for item in items] == [65, 194, 255]


def test_enhanced_multiframe_reads_rescale_and_window_from_functional_groups(tmp_path):
    def item(**values) -> Dataset:
        ds = Dataset()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return ds

    shared = item(FrameVOILUTSequence=[item(WindowCenter=40, WindowWidth=80)])
    per_frame = [
        item(PixelValueTransformationSequence=[item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")]),
        item(PixelValueTransformationSequence=[item(RescaleSlope=2, RescaleIntercept=0, RescaleType="HU")]),
    ]
    frames = np.array([[[1044]], [[30]]], dtype=np.int16)
    path = write_dicom(
        tmp_path / "enh.dcm",
        frames,
        SharedFunctionalGroupsSequence=[shared],
        PerFrameFunctionalGroupsSequence=per_frame,
    )
    items = scan(path)
    # frame 0: 1044 - 1024 = 20 HU -> 64.56 -> 65; frame 1: 30 * 2 = 60 HU -> 193.67 -> 194
    assert [int(pixels(i)[0, 0]) for i in items] == [65, 194]


def test_rgb_dicom_is_an_rgb_image_without_windowing(tmp_path):
    rgb = np.array([[[255, 0, 0], [10, 20, 30]]], dtype=np.uint8)
    item = only_slice(write_dicom(tmp_path / "photo.dcm", rgb, photometric="RGB", WindowCenter=0, WindowWidth=1))
    assert item.image.mode == "RGB"
    np.testing.assert_array_equal(pixels(item), rgb)


def test_ybr_full_dicom_is_converted_to_rgb(tmp_path):
    # (Y, Cb, Cr) = (76, 85, 255) is pure red: R = 76 + 1.402 * 127 = 254; a grey pixel has Cb = Cr = 128
    ybr = np.array([[[76, 85, 255], [100, 128, 128]]], dtype=np.uint8)
    got = pixels(only_slice(write_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL")))
    assert got[0, 0, 0] >= 250 and got[0, 0, 1] <= 5 and got[0, 0, 2] <= 5
    np.testing.assert_array_equal(got[0, 1], [100, 100, 100])


def test_grey_rgb_dicom_becomes_mode_l_like_read_image(tmp_path):
    grey = np.repeat(np.array([[[7], [200]]], dtype=np.uint8), 3, axis=2)
    item = only_slice(write_dicom(tmp_path / "g.dcm", grey, photometric="RGB"))
    assert item.image.mode == "L"
    np.testing.assert_array_equal(pixels(item), [[7, 200]])


def test_dicom_found_by_marker_without_suffix_and_by_suffix_without_preamble(tmp_path):
    stored = np.array([[0, 40]], dtype=np.uint16)
    marked = write_dicom(tmp_path / "IM0001", stored, WindowCenter=40, WindowWidth=80)
    bare = write_dicom(tmp_path / "bare.dcm", stored, preamble=False, WindowCenter=40, WindowWidth=80)
    assert bare.read_bytes()[128:132] != b"DICM"
    for item in scan(marked, bare):
        np.testing.assert_array_equal(pixels(item), [[0, 129]])  # 40 -> 129.11


def test_the_files_voi_function_sigmoid_and_linear_exact(tmp_path):
    stored = np.array([[0, 20, 40, 60, 80, 100]], dtype=np.uint16)
    sigmoid = write_dicom(tmp_path / "s.dcm", stored, WindowCenter=40, WindowWidth=80, VOILUTFunction="SIGMOID")
    exact = write_dicom(tmp_path / "e.dcm", stored, WindowCenter=40, WindowWidth=80, VOILUTFunction="LINEAR_EXACT")
    # SIGMOID (C.11.2.1.3.1): 255 / (1 + exp(-4 (v - 40) / 80)): 0 -> 255/(1 + e^2) = 30.40 -> 30;
    # 20 -> 255/(1 + e^1) = 68.58 -> 69; 40 -> 127.5 -> 128; 60 -> 186.42 -> 186; 80 -> 224.60 -> 225;
    # 100 -> 255/(1 + e^-3) = 242.91 -> 243
    np.testing.assert_array_equal(pixels(only_slice(sigmoid)), [[30, 69, 128, 186, 225, 243]])
    # LINEAR_EXACT (C.11.2.1.3.2): (v - 40)/80 + 0.5, black at v <= 0, white at v > 80: 20 -> 63.75 -> 64;
    # 40 -> 127.5 -> 128; 60 -> 191.25 -> 191; 80 -> 255
    np.testing.assert_array_equal(pixels(only_slice(exact)), [[0, 64, 128, 191, 255, 255]])
    unknown = write_dicom(tmp_path / "u.dcm", stored, WindowCenter=40, WindowWidth=80, VOILUTFunction="LOG")
    (problem,) = problems(scan(unknown))
    assert "VOI LUT Function" in problem.reason and "LOG" in problem.reason


@pytest.mark.parametrize(("bits", "table", "expected"), [
    (8, [0, 10, 200, 255], [0, 10, 200, 255, 255]),  # 8-bit entries are the display values
    (16, [0, 257, 32896, 65535], [0, 1, 128, 255, 255]),  # 16-bit entries * 255/65535: 257 -> 1, 32896 -> 128
])
def test_the_files_voi_lut_sequence_is_applied_before_its_window(tmp_path, bits, table, expected):
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4, 1, bits])  # 4 entries, the first for modality value 1
    lut.add_new("LUTData", "US", table)
    # stored 0..4 with RescaleIntercept 1 are modality values 1..5: 1 -> entry 0, ..., 4 -> entry 3, 5 -> (last) 3
    path = write_dicom(tmp_path / "lut.dcm", np.array([[0, 1, 2, 3, 4]], dtype=np.uint16), RescaleSlope=1,
                       RescaleIntercept=1, VOILUTSequence=[lut], WindowCenter=2, WindowWidth=1)
    np.testing.assert_array_equal(pixels(only_slice(path)), [expected])


@pytest.mark.parametrize(("sop_class", "kind"), [("RTDoseStorage", "RT dose"), ("SegmentationStorage", "segmentation")])
def test_pixel_data_that_is_no_picture_of_the_patient_is_refused_by_kind(tmp_path, sop_class, kind):
    path = write_dicom(tmp_path / "obj.dcm", np.arange(4, dtype=np.uint16).reshape(2, 2))
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = getattr(pydicom.uid, sop_class)
    ds.save_as(path, enforce_file_format=True)
    (problem,) = problems(scan(path))
    assert kind in problem.reason and "not an image of the patient" in problem.reason


# every compressed transfer syntax of pydicom's decoders except the video ones: pdd's dependencies decode them all
COMPRESSED = ["JPEGBaseline8Bit", "JPEGExtended12Bit", "JPEGLossless", "JPEGLosslessSV1", "JPEGLSLossless",
              "JPEGLSNearLossless", "JPEG2000Lossless", "JPEG2000", "HTJ2KLossless", "HTJ2KLosslessRPCL", "HTJ2K",
              "RLELossless"]


@pytest.mark.parametrize("syntax", COMPRESSED)
def test_the_installed_dependencies_decode_every_compressed_transfer_syntax(syntax):
    from pydicom.pixels import get_decoder

    decoder = get_decoder(getattr(pydicom.uid, syntax))
    assert decoder.is_available, f"{syntax}: install one of {decoder.missing_dependencies}"


def test_a_file_without_its_decoder_names_the_transfer_syntax_and_the_packages(tmp_path):
    """pydicom's own JPEG-LS test file, read where pylibjpeg is not installed (its import blocked)."""
    source = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small_jpeg_ls_lossless.dcm"
    script = (
        "import sys\n"
        "for name in ('pylibjpeg', 'libjpeg', 'openjpeg', 'rle', 'jpeg_ls', 'gdcm'): sys.modules[name] = None\n"
        "from pdd.inference.readers import iter_scan_slices\n"
        f"(item,) = iter_scan_slices([{str(source)!r}])\n"
        "print(item.reason)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    reason = result.stdout.strip()
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in reason
    assert "no decoder installed" in reason and "pylibjpeg-libjpeg" in reason


def test_every_grayscale_ct_and_mr_image_pydicom_ships_is_read_and_every_other_file_says_why():
    """pydicom's own test files (from scanners and toolkits: JPEG Lossless, JPEG-LS, JPEG 2000, RLE, big endian,
    deflated, enhanced; RT objects, reports), read from its package folder (`get_testdata_files` would go online
    for the larger ones). `pdd predict` on some of them: tests/engine/test_predict.py."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    items = scan(folder)
    read = {item.source for item in items if isinstance(item, ScanSlice)}
    reasons = {item.source: item.reason for item in problems(items)}
    files = {path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")}
    assert files == read | reasons.keys() and not read & reasons.keys()
    expected = set()
    for path in files:  # what pydicom itself decodes as a grayscale CT or MR image
        try:
            ds = pydicom.dcmread(path, force=True)
            if (ds.get("Modality") in ("CT", "MR") and str(ds.get("PhotometricInterpretation")).startswith("MONO")
                    and ds.pixel_array.size):
                expected.add(path)
        except Exception:  # not DICOM, or no decodable pixels
            continue
    assert len(expected) >= 12 and expected <= read, sorted(path.name for path in expected - read)
    assert {"MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "693_J2KI.dcm"} <= {path.name for path in read}
    by_name = {path.name: reason for path, reason in reasons.items()}
    assert "RT Dose Storage" in by_name["rtdose.dcm"] and "not an image of the patient" in by_name["rtdose.dcm"]
    assert "Segmentation Storage" in by_name["liver_1frame.dcm"]
    assert "Basic Text SR Storage" in by_name["reportsi.dcm"] and "no pixel data" in by_name["reportsi.dcm"]
    assert "(Explicit VR Little Endian)" in by_name["MR_truncated.dcm"]  # a decoding failure names the syntax
    assert "(JPEG Extended (Process 2 and 4))" in by_name["JPEG-lossy.dcm"]
    assert "not an image, DICOM or NIfTI" in by_name["README.txt"]


def test_unsupported_photometric_interpretation_is_a_problem(tmp_path):
    path = write_dicom(tmp_path / "pal.dcm", np.zeros((2, 2), np.uint8), photometric="MONOCHROME2")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(path, enforce_file_format=True)
    (problem,) = problems(scan(path))
    assert "PALETTE COLOR" in problem.reason


# --- DICOM series in a folder ----------------------------------------------------------------


def series_file(path: Path, value: int, **tags) -> Path:
    return write_dicom(path, np.array([[0, value]], dtype=np.uint16), SeriesInstanceUID="1.2.3.4", **tags)


def order(folder: Path) -> list[str]:
    return [item.source.name for item in scan(folder)]


def test_series_comes_out_in_slice_position_order_not_file_name_order(tmp_path):
    axial = [1, 0, 0, 0, 1, 0]  # normal (0, 0, 1): sorted by z
    # InstanceNumber deliberately contradicts the positions: the position must win
    for name, z, number in (("a.dcm", 10, 1), ("b.dcm", 5, 2), ("c.dcm", -2.5, 3)):
        position = {"ImagePositionPatient": [0, 0, z], "ImageOrientationPatient": axial}
        series_file(tmp_path / name, number, InstanceNumber=number, **position)
    assert order(tmp_path) == ["c.dcm", "b.dcm", "a.dcm"]


def test_series_position_is_measured_along_the_slice_normal(tmp_path):
    sagittal = [0, 1, 0, 0, 0, -1]  # normal = (0,1,0) x (0,0,-1) = (-1, 0, 0): sorted by -x, z is the same for all
    for name, x in (("a.dcm", 10), ("b.dcm", 30), ("c.dcm", 20)):
        series_file(tmp_path / name, x, ImagePositionPatient=[x, 0, 7], ImageOrientationPatient=sagittal)
    assert order(tmp_path) == ["b.dcm", "c.dcm", "a.dcm"]


def test_series_without_positions_is_sorted_by_instance_number(tmp_path):
    for name, number in (("x1.dcm", 3), ("x2.dcm", 1), ("x3.dcm", 2)):
        series_file(tmp_path / name, number, InstanceNumber=number)
    assert order(tmp_path) == ["x2.dcm", "x3.dcm", "x1.dcm"]


def test_series_without_positions_or_numbers_keeps_file_name_order(tmp_path):
    for name in ("s2.dcm", "s10.dcm", "s1.dcm"):
        series_file(tmp_path / name, 5)
    assert order(tmp_path) == ["s1.dcm", "s10.dcm", "s2.dcm"]


def test_series_is_placed_at_its_first_file_among_other_inputs(tmp_path):
    Image.fromarray(np.full((2, 2), 9, np.uint8)).save(tmp_path / "a_photo.png")
    Image.fromarray(np.full((2, 2), 9, np.uint8)).save(tmp_path / "z_photo.png")
    series_file(tmp_path / "m2.dcm", 1, InstanceNumber=1)
    series_file(tmp_path / "m1.dcm", 2, InstanceNumber=2)
    assert order(tmp_path) == ["a_photo.png", "m2.dcm", "m1.dcm", "z_photo.png"]


# --- NIfTI -----------------------------------------------------------------------------------


def hot_voxel_volume() -> np.ndarray:
    volume = np.zeros((4, 5, 3))
    volume[1, 0, 2] = 10.0  # voxel (i=1, j=0, k=2)
    return volume


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_nifti_axial_slices_are_shown_as_a_dicom_viewer_shows_them(tmp_path, name):
    items = scan(write_nifti(tmp_path / name, hot_voxel_volume()))  # identity affine: stored as RAS
    assert [item.slice_index for item in items] == [0, 1, 2]
    assert items[2].name == f"{name}[slice 2]"
    image = pixels(items[2])
    # slice k=2 is volume[:, :, 2] of shape (x=4, y=5), shown as np.flip(s.T) of shape (5, 4): voxel (i, j) at
    # row 5-1-j (anterior at the top), column 4-1-i (the patient's right on the left): (1, 0) -> row 4, column 2
    assert image.shape == (5, 4) and items[2].image.mode == "L"
    assert image[4, 2] == 255
    assert np.count_nonzero(image) == 1
    assert not np.any(pixels(items[0])) and not np.any(pixels(items[1]))


@pytest.mark.parametrize(
    ("axis", "count", "shape", "hot"),
    [
        # sagittal: slice i=1 is volume[1] of shape (y=5, z=3), shown (3, 5): z=2 -> row 3-1-2 = 0 (superior at
        # the top), y=0 -> column 5-1-0 = 4 (anterior on the left, posterior on the right)
        (0, 4, (3, 5), (0, 4)),
        # coronal: slice j=0 is volume[:, 0] of shape (x=4, z=3), shown (3, 4): row 0, column 4-1-1 = 2
        (1, 5, (3, 4), (0, 2)),
    ],
)
def test_nifti_axis_selects_the_slicing_direction(tmp_path, axis, count, shape, hot):
    items = scan(write_nifti(tmp_path / "v.nii", hot_voxel_volume()), axis=axis)
    assert len(items) == count
    hot_index = 1 if axis == 0 else 0
    image = pixels(items[hot_index])
    assert image.shape == shape
    assert image[hot] == 255 and np.count_nonzero(image) == 1


def test_nifti_stored_las_and_ras_give_the_same_slices(tmp_path):
    """The same head stored with the x axis running right-to-left (LAS, as many converters write) and
    left-to-right (RAS): nibabel's canonical orientation makes every slice along every axis identical."""
    volume = np.random.default_rng(3).normal(40, 30, size=(6, 5, 4)).astype(np.float32)
    ras = write_nifti(tmp_path / "ras.nii.gz", volume, affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    las_affine = np.diag([-2.0, 2.0, 3.0, 1.0])
    las_affine[0, 3] = 2.0 * (volume.shape[0] - 1)  # voxel i of LAS is voxel 5 - i of RAS, at the same place
    las = write_nifti(tmp_path / "las.nii.gz", volume[::-1].copy(), affine=las_affine)
    assert nib.aff2axcodes(nib.load(las).affine) == ("L", "A", "S")
    for axis in (0, 1, 2):
        from_ras, from_las = scan(ras, axis=axis), scan(las, axis=axis)
        assert len(from_ras) == len(from_las) == volume.shape[axis]
        for a, b in zip(from_ras, from_las, strict=True):
            np.testing.assert_array_equal(pixels(a), pixels(b))
    assert len({pixels(item).tobytes() for item in scan(ras, axis=0)}) == volume.shape[0]  # the slices differ


@pytest.mark.parametrize(("name", "share"), [("big.nii", 8), ("big.nii.gz", 1)])
def test_nifti_is_read_slice_by_slice_never_whole_as_float64(tmp_path, name, share):
    """A 48³ int16 volume with scl_slope: read whole in float64 it would take 864 KiB at once. An uncompressed
    file is memory-mapped (a slice at a time in memory); a gzip one is decompressed once into its stored int16."""
    import tracemalloc

    volume = np.random.default_rng(4).integers(-1000, 1000, size=(48, 48, 48)).astype(np.int16)
    path = write_nifti(tmp_path / name, volume, slope=0.5, inter=-10)
    whole_float64 = volume.size * 8
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_scan_slices([path]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 48
    assert peak < whole_float64 / share, f"peak {peak} bytes while reading, whole volume in float64 {whole_float64}"


def test_nifti_scl_slope_and_inter_are_applied(tmp_path):
    raw = np.array([0, 5, 15, 30, 60], dtype=np.int16).reshape(5, 1, 1)
    path = write_nifti(tmp_path / "s.nii", raw, slope=2, inter=-10)
    items = scan(path, window=parse_window("50,100"))
    # values 2*raw - 10 = -10, 0, 20, 50, 110; C - 0.5 = 49.5, W - 1 = 99: -10 and 0 -> 0;
    # (20 - 49.5)/99 + 0.5 -> 51.52 -> 52; (50 - 49.5)/99 + 0.5 -> 128.79 -> 129; 110 > 98.5 -> 255.
    # (shape (5, 1, 1) along axis 2: one slice of shape (1, 5), the x axis right to left)
    (item,) = items
    np.testing.assert_array_equal(pixels(item), [[255, 129, 52, 0, 0]])


def test_nifti_file_window_is_its_display_range(tmp_path):
    raw = np.array([0, 25, 50, 100, 200], dtype=np.float32).reshape(5, 1, 1)
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header["cal_min"], image.header["cal_max"] = 0, 100
    image.to_filename(str(tmp_path / "cal.nii"))
    (item,) = scan(tmp_path / "cal.nii")
    # cal_min..cal_max = 0..100 stretched: 25 -> 63.75 -> 64; 50 -> 127.5 -> 128; 200 -> 255 (x right to left)
    np.testing.assert_array_equal(pixels(item), [[255, 255, 128, 64, 0]])


def test_nifti_without_window_is_stretched_over_the_whole_volume(tmp_path):
    volume = np.zeros((2, 2, 2))
    volume[..., 0] = 100.0
    volume[..., 1] = 50.0  # constant slice: a per-slice stretch would make it black
    volume[0, 0, 0] = -100.0
    items = scan(write_nifti(tmp_path / "w.nii", volume))
    # range -100..100: 50 -> 150/200*255 = 191.25 -> 191; 100 -> 255; -100 -> 0
    np.testing.assert_array_equal(pixels(items[1]), np.full((2, 2), 191))
    assert sorted(np.unique(pixels(items[0])).tolist()) == [0, 255]


def test_nifti_nan_voxels_are_black_and_ignored_by_the_stretch(tmp_path):
    volume = np.array([[[np.nan], [0.0]], [[40.0], [80.0]]])
    (item,) = scan(write_nifti(tmp_path / "nan.nii", volume))
    # finite range 0..80: 40/80*255 = 127.5 -> 128. np.flip of [[nan, 0], [40, 80]].T is [[80, 0], [40, nan]]
    np.testing.assert_array_equal(pixels(item), [[255, 0], [128, 0]])


def test_2d_nifti_is_one_slice_without_index(tmp_path):
    plane = np.zeros((3, 2))
    plane[2, 0] = 1.0
    item = only_slice(write_nifti(tmp_path / "p.nii", plane))
    assert item.slice_index is None and item.name == "p.nii"
    image = pixels(item)
    # (i=2, j=0) -> row 2-1-0 = 1, column 3-1-2 = 0
    assert image.shape == (2, 3) and image[1, 0] == 255 and np.count_nonzero(image) == 1


def test_4d_nifti_with_one_volume_is_read_and_with_several_is_a_problem(tmp_path):
    single = scan(write_nifti(tmp_path / "one.nii", hot_voxel_volume()[..., np.newaxis]))
    assert [item.slice_index for item in single] == [0, 1, 2]
    (problem,) = scan(write_nifti(tmp_path / "two.nii.gz", np.zeros((2, 2, 2, 3))))
    assert isinstance(problem, InputProblem) and "split" in problem.reason and "3 volumes" in problem.reason


def test_axis_is_validated_before_iterating():
    for bad in (3, -1, True):
        with pytest.raises(ConfigError, match="axis"):
            iter_scan_slices(["does-not-matter.nii"], axis=bad)


# --- ordinary images -------------------------------------------------------------------------


def test_png_is_decoded_exactly_like_read_image(tmp_path):
    sixteen = np.array([[1000, 1500], [2000, 4095]], dtype=np.uint16)  # read_image stretches 16-bit
    Image.fromarray(sixteen).save(tmp_path / "ct16.png")
    colour = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 9
    Image.fromarray(colour).save(tmp_path / "colour.png")
    Image.fromarray(colour).save(tmp_path / "really_png.jpg", format="PNG")
    paths = [tmp_path / "ct16.png", tmp_path / "colour.png", tmp_path / "really_png.jpg"]
    items = scan(*paths, window=parse_window("brain"))  # a window does not touch display images
    for path, item in zip(paths, items, strict=True):
        reference = read_image(path)
        assert item.source == path and item.slice_index is None and item.name == path.name
        assert item.image.mode == reference.mode
        assert item.image.tobytes() == reference.tobytes()


# --- problems --------------------------------------------------------------------------------


def test_bad_inputs_are_reported_and_good_ones_around_them_still_come_out(tmp_path):
    good_png = tmp_path / "good.png"
    Image.fromarray(np.full((3, 3), 77, np.uint8)).save(good_png)
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 3)
    text_png = tmp_path / "scan.png"
    text_png.write_text("patient notes, not an image\n")
    missing = tmp_path / "missing.dcm"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden").write_text("x")
    notes = tmp_path / "notes_only"
    notes.mkdir()
    (notes / "notes.txt").write_text("see report")
    good_nifti = write_nifti(tmp_path / "good.nii.gz", hot_voxel_volume())

    items = scan(good_png, corrupt, text_png, missing, empty, notes, good_nifti)

    assert [(type(item).__name__, item.source) for item in items] == [
        ("ScanSlice", good_png),
        ("InputProblem", corrupt),
        ("InputProblem", text_png),
        ("InputProblem", missing),
        ("InputProblem", empty),
        ("InputProblem", notes / "notes.txt"),
        ("InputProblem", notes),
        ("ScanSlice", good_nifti),
        ("ScanSlice", good_nifti),
        ("ScanSlice", good_nifti),
    ]
    np.testing.assert_array_equal(pixels(items[0]), np.full((3, 3), 77))
    reasons = [item.reason for item in problems(items)]
    assert all(reason and "\n" not in reason for reason in reasons)
    assert "corrupt" in reasons[0]
    assert "not an image, DICOM or NIfTI" in reasons[1]
    assert "no such file" in reasons[2]
    assert "empty" in reasons[3]
    assert "not an image, DICOM or NIfTI" in reasons[4]
    assert "nothing to score" in reasons[5]


def test_truncated_dicom_is_a_problem(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", np.arange(64, dtype=np.int16).reshape(8, 8))
    path.write_bytes(path.read_bytes()[:-40])
    (problem,) = scan(path)
    assert isinstance(problem, InputProblem) and "pixel data" in problem.reason


def test_dicom_without_pixel_data_is_a_problem(tmp_path):
    path = write_dicom(tmp_path / "report.dcm", np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    (problem,) = scan(path)
    assert isinstance(problem, InputProblem)
    assert "CT Image Storage file without pixel data" in problem.reason


def test_unreadable_nifti_is_a_problem(tmp_path):
    bad_gz = tmp_path / "bad.nii.gz"
    bad_gz.write_bytes(b"this is not gzip")
    whole = write_nifti(tmp_path / "cut.nii", np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    whole.write_bytes(whole.read_bytes()[:400])
    for item in scan(bad_gz, whole):
        assert isinstance(item, InputProblem) and "cannot read NIfTI" in item.reason


def test_truncated_png_is_a_problem_naming_the_format(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.arange(1024, dtype=np.uint16).reshape(32, 32).astype(np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:-30])
    (problem,) = scan(path)
    assert isinstance(problem, InputProblem) and "PNG" in problem.reason


def test_folder_walk_is_recursive_sorted_and_skips_hidden_entries(tmp_path):
    for relative in ("b/2.png", "b/1.png", "a.png", "c/d/e.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / relative)
    (tmp_path / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: main")
    items = scan(tmp_path)
    walked = [item.source.relative_to(tmp_path).as_posix() for item in items]
    assert walked == ["a.png", "b/1.png", "b/2.png", "c/d/e.png"]
    assert count_inputs([tmp_path, tmp_path / "missing", tmp_path / ".git"]) == 4 + 1 + 1


def test_iteration_is_lazy(tmp_path):
    first = tmp_path / "first.png"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(first)
    later = tmp_path / "later.png"
    items = iter_scan_slices([first, later])
    assert next(items).source == first
    Image.fromarray(np.full((2, 2), 5, np.uint8)).save(later)  # created only after the first slice came out
    (item,) = list(items)
    assert isinstance(item, ScanSlice) and item.source == later


# --- parse_window ----------------------------------------------------------------------------


def test_window_presets_are_the_standard_head_ct_windows():
    assert parse_window("brain") == Window(40, 80)
    assert parse_window(" Subdural ") == Window(75, 215)
    assert parse_window("BONE") == Window(600, 2800)
    assert set(WINDOW_PRESETS) >= {"brain", "subdural", "bone"}


def test_window_center_width_text_and_the_files_own():
    assert parse_window("40,80") == Window(40.0, 80.0)
    assert parse_window(" -600 , 1500 ") == Window(-600.0, 1500.0)
    assert parse_window("File") is None  # iter_scan_slices' window=None: each file's own


@pytest.mark.parametrize("text", ["", "wide", "40", "40,0", "40,0.5", "40,-5", "a,b", "40,80,3", "nan,80", "40,inf"])
def test_bad_window_text_is_a_config_error_listing_the_choices(text):
    with pytest.raises(ConfigError, match="brain, subdural, bone, file"):
        parse_window(text)


@pytest.mark.timeout(10)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_in_a_folder_is_reported_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.dcm")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "z.png")
    items = scan(tmp_path)
    assert [(type(item).__name__, item.source.name) for item in items] == [
        ("InputProblem", "pipe.dcm"),
        ("ScanSlice", "z.png"),
    ]
