"""The decoding rules of `pdd.inference.readers`, checked against pixel values worked out by hand.

Every window expectation below is ``round_half_even(clip((v - (C - W/2)) / W, 0, 1) * 255)`` for
modality value ``v``, with the arithmetic written next to it.
"""

from __future__ import annotations

import os
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


def write_nifti(path: Path, volume: np.ndarray, *, slope: float | None = None, inter: float | None = None) -> Path:
    image = nib.Nifti1Image(volume, np.eye(4))
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
    # brain window: lower = 40 - 80/2 = 0
    expected = [
        [0, 0, 64, 128],  # -1000 and 0 clip to 0; 20/80*255 = 63.75 -> 64; 40/80*255 = 127.5 -> 128 (half to even)
        [191, 255, 255, 255],  # 60/80*255 = 191.25 -> 191; 80 and above clip to 255
    ]
    np.testing.assert_array_equal(pixels(item), expected)


def test_window_argument_overrides_the_tags(tmp_path):
    item = only_slice(ct_file(tmp_path), window=parse_window("bone"))
    # bone window C 600 W 2800: lower = 600 - 1400 = -800
    # -1000 -> 0; 800/2800*255 = 72.86 -> 73; 820/2800*255 = 74.68 -> 75; 840/2800*255 = 76.5 -> 76 (half to even)
    # 860/2800*255 = 78.32 -> 78; 880/2800*255 = 80.14 -> 80; 1400/2800*255 = 127.5 -> 128; 2800/2800 -> 255
    expected = [[0, 73, 75, 76], [78, 80, 128, 255]]
    np.testing.assert_array_equal(pixels(item), expected)


def test_without_rescale_tags_the_stored_values_are_windowed(tmp_path):
    stored = np.array([[0, 20, 40, 100]], dtype=np.uint16)
    item = only_slice(write_dicom(tmp_path / "mr.dcm", stored, WindowCenter=40, WindowWidth=80))
    np.testing.assert_array_equal(pixels(item), [[0, 64, 128, 255]])  # 20/80*255 = 63.75; 40/80*255 = 127.5


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
    # lower = 0: 0 -> 0 -> 255; 50/200*255 = 63.75 -> 64 -> 191; 100/200*255 = 127.5 -> 128 -> 127; 200 -> 255 -> 0
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
    # lower 0: 20 -> 63.75 -> 64; 60 -> 191.25 -> 191; 90 -> clip -> 255
    assert [int(pixels(item)[0, 0]) for item in items] == [64, 191, 255]


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
    # frame 0: 1044 - 1024 = 20 HU -> 20/80*255 = 63.75 -> 64; frame 1: 30 * 2 = 60 HU -> 191.25 -> 191
    assert [int(pixels(i)[0, 0]) for i in items] == [64, 191]


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
        np.testing.assert_array_equal(pixels(item), [[0, 128]])


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
def test_nifti_axial_slices_and_rot90_placement(tmp_path, name):
    items = scan(write_nifti(tmp_path / name, hot_voxel_volume()))
    assert [item.slice_index for item in items] == [0, 1, 2]
    assert items[2].name == f"{name}[slice 2]"
    image = pixels(items[2])
    # slice k=2 is volume[:, :, 2] of shape (4, 5); rot90 gives (5, 4) with voxel (i, j) at row 5-1-j, column i
    assert image.shape == (5, 4) and items[2].image.mode == "L"
    assert image[4, 1] == 255
    assert np.count_nonzero(image) == 1
    assert not np.any(pixels(items[0])) and not np.any(pixels(items[1]))


@pytest.mark.parametrize(
    ("axis", "count", "shape", "hot"),
    [
        (0, 4, (3, 5), (0, 0)),  # slice i=1 is volume[1] of shape (j=5, k=3): k=2 -> row 3-1-2 = 0, j=0 -> column 0
        (1, 5, (3, 4), (0, 1)),  # slice j=0 is volume[:, 0] of shape (i=4, k=3): row 3-1-2 = 0, column i = 1
    ],
)
def test_nifti_axis_selects_the_slicing_direction(tmp_path, axis, count, shape, hot):
    items = scan(write_nifti(tmp_path / "v.nii", hot_voxel_volume()), axis=axis)
    assert len(items) == count
    hot_index = 1 if axis == 0 else 0
    image = pixels(items[hot_index])
    assert image.shape == shape
    assert image[hot] == 255 and np.count_nonzero(image) == 1


def test_nifti_scl_slope_and_inter_are_applied(tmp_path):
    raw = np.array([0, 5, 15, 30, 60], dtype=np.int16).reshape(5, 1, 1)
    path = write_nifti(tmp_path / "s.nii", raw, slope=2, inter=-10)
    items = scan(path, window=parse_window("50,100"))
    # values 2*raw - 10 = -10, 0, 20, 50, 110; lower = 0: -10 -> 0; 0 -> 0; 20/100*255 = 51;
    # 50/100*255 = 127.5 -> 128; 110 -> 255
    # (shape (5, 1, 1) along axis 2: one slice of shape (1, 5) after rot90, the i axis left to right)
    (item,) = items
    np.testing.assert_array_equal(pixels(item), [[0, 0, 51, 128, 255]])


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
    # finite range 0..80: 40/80*255 = 127.5 -> 128. rot90 of [[nan, 0], [40, 80]] is [[0, 80], [nan, 40]]
    np.testing.assert_array_equal(pixels(item), [[0, 255], [0, 128]])


def test_2d_nifti_is_one_slice_without_index(tmp_path):
    plane = np.zeros((3, 2))
    plane[2, 0] = 1.0
    item = only_slice(write_nifti(tmp_path / "p.nii", plane))
    assert item.slice_index is None and item.name == "p.nii"
    image = pixels(item)
    assert image.shape == (2, 3) and image[1, 2] == 255 and np.count_nonzero(image) == 1  # (i=2, j=0) -> row 1, col 2


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
    assert "no pixel data" in problem.reason and "CT Image Storage" in problem.reason


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
    assert (Window(40, 80).lower, Window(40, 80).upper) == (0, 80)


def test_window_center_width_text():
    assert parse_window("40,80") == Window(40.0, 80.0)
    assert parse_window(" -600 , 1500 ") == Window(-600.0, 1500.0)
    assert parse_window(None) is None


@pytest.mark.parametrize("text", ["", "wide", "40", "40,0", "40,-5", "a,b", "40,80,3", "nan,80", "40,inf"])
def test_bad_window_text_is_a_config_error_listing_the_choices(text):
    with pytest.raises(ConfigError, match="brain, subdural, bone"):
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
