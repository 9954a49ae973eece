"""Readers and CTVolume geometry: round trips on oblique grids, real DICOM, and every refusal."""
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import oblique_volume, shared
from ICHLocalizationLib.io import case_name, read_volume, write_image
from ICHLocalizationLib.phantom import Phantom, generate, write_dicom_series
from ICHLocalizationLib.volume import CTVolume, InputError


def test_ijk_ras_round_trip_on_oblique_grid():
    vol = oblique_volume()
    ijk = np.array([[0, 0, 0], [47, 39, 11], [3.5, 7.25, 2.0]])
    back = vol.ras_to_ijk_points(vol.ijk_to_ras_points(ijk))
    assert np.abs(back - ijk).max() < 1e-9
    assert np.allclose(vol.spacing, [0.7, 0.9, 2.5])
    # LPS is RAS with the first two axes negated
    assert np.allclose(vol.ijk_to_lps[:2], -vol.ijk_to_ras[:2]) and np.allclose(vol.ijk_to_lps[2], vol.ijk_to_ras[2])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_itk_formats_keep_oblique_geometry(tmp_path, suffix):
    vol = oblique_volume()
    path = tmp_path / f"v{suffix}"
    write_image(vol, vol.hu.astype(np.int16), path)
    back = read_volume(path, validate=False)
    corners = np.array([[0, 0, 0], [47, 0, 0], [0, 39, 0], [0, 0, 11], [47, 39, 11]])
    assert np.abs(back.ijk_to_ras_points(corners) - vol.ijk_to_ras_points(corners)).max() < 0.01
    assert np.array_equal(back.hu, vol.hu)


@pytest.mark.parametrize("thickness,slices", [(5.0, 8), (0.625, 24)])
def test_dicom_series_round_trip(tmp_path, thickness, slices):
    from ICHLocalizationLib.preprocessing import rotation_matrix

    ph = generate(3, subtypes=["IPH"], size=128, slice_thickness=thickness, slices=slices)
    m = ph.volume.ijk_to_ras.copy()
    m[:3, :3] = rotation_matrix(8.0, 0.0, 4.0) @ m[:3, :3]  # an oblique acquisition
    oblique = Phantom(CTVolume(ph.volume.hu, m), ph.mask, ph.lesions, ph.seed)
    write_dicom_series(oblique, tmp_path / "dicom")
    back = read_volume(tmp_path / "dicom", validate=False)
    corners = np.array([[0, 0, 0], [127, 127, slices - 1], [127, 0, 0]])
    assert np.abs(back.ijk_to_ras_points(corners) - oblique.volume.ijk_to_ras_points(corners)).max() < 0.01
    inside = ph.volume.hu > -2000
    assert np.abs(back.hu[inside] - ph.volume.hu[inside]).max() <= 1.0
    assert back.hu.min() > -1200, "padding (-3024 HU) must become air"


def test_single_dicom_slice_needs_spacing_when_missing(tmp_path):
    import pydicom

    path = shared("ct-ich-slices", "hemo_subset", "049_21.dcm")
    ds = pydicom.dcmread(str(path))
    assert "PixelSpacing" not in ds
    with pytest.raises(InputError, match="--spacing"):
        read_volume(path)
    vol = read_volume(path, spacing=(0.45, 0.45, 5.0))
    assert vol.shape == (1, 512, 512) and np.allclose(vol.spacing, [0.45, 0.45, 5.0])
    brain = vol.hu[(vol.hu > 0) & (vol.hu < 100)]
    assert 20 < np.median(brain) < 50, "CT-ICH slices are already HU: brain around 30 HU"


def test_rsna_samples_rescale_and_padding():
    folder = shared("rsna-samples")
    for path in sorted(folder.glob("*.dcm")):
        vol = read_volume(path, validate=False)
        assert vol.hu.min() >= -1024.5, f"{path.name}: padding not turned into air"
        assert vol.hu.max() > 300, "bone should be present"
        assert 0.4 <= vol.spacing[0] <= 0.5
        air = (vol.hu < -900).mean()
        assert air > 0.1


def test_multiple_series_picks_axial_ct_or_named_uid(tmp_path):
    ph = generate(4, subtypes=[], size=96, slices=6)
    write_dicom_series(ph, tmp_path / "both")
    coronal = Phantom(CTVolume(ph.volume.hu[:, :, :4], np.array([[-1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -5.0, 0, 0], [0, 0, 0, 1]])),
                      ph.mask[:, :, :4], [], 999)
    write_dicom_series(coronal, tmp_path / "both" / "other")
    vol = read_volume(tmp_path / "both", validate=False)
    assert vol.shape[0] == 6 and any("series" in w for w in vol.warnings)
    other_uid = next(u for u in [read_volume(tmp_path / "both" / "other", validate=False).metadata["SeriesInstanceUID"]])
    assert read_volume(tmp_path / "both", series_uid=other_uid, validate=False).shape[2] == 4


def test_gantry_tilt_and_uneven_spacing_are_reported(tmp_path):
    import pydicom

    ph = generate(5, subtypes=[], size=96, slices=8)
    write_dicom_series(ph, tmp_path / "d")
    files = sorted((tmp_path / "d").glob("*.dcm"))
    for n, f in enumerate(files):
        ds = pydicom.dcmread(str(f))
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + n * 1.0, z + (2.0 if n >= 4 else 0.0)]  # tilt + a gap
        ds.save_as(str(f))
    vol = read_volume(tmp_path / "d", validate=False)
    text = " ".join(vol.warnings)
    assert "gantry tilt" in text and "non-uniform slice spacing" in text


def _nifti(tmp_path, name, arr, spacing=(0.5, 0.5, 5.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    p = tmp_path / name
    sitk.WriteImage(img, str(p))
    return p


@pytest.mark.parametrize("name,make,message", [
    ("mr.nii.gz", lambda rng: (rng.random((24, 128, 128)) * 900).astype(np.int16), "not a CT"),
    ("zeros.nii.gz", lambda rng: np.zeros((24, 128, 128), np.int16), "constant volume"),
    ("nan.nii.gz", lambda rng: np.full((24, 64, 64), np.nan, np.float32), "NaN"),
    ("tiny.nii.gz", lambda rng: np.zeros((1, 8, 8), np.int16), "too small"),
    ("body.nii.gz", lambda rng: np.where(np.hypot(*np.mgrid[-256:256, -256:256]) < 240, 40, -1000)[None].repeat(4, 0).astype(np.int16), "chest or body"),
])
def test_invalid_volumes_are_refused_with_a_reason(tmp_path, name, make, message):
    arr = make(np.random.default_rng(0))
    if name == "body.nii.gz":
        arr[:, 250:260, :] = 700  # some bone so that only the width refuses it
        arr[:, 100:110, 100:400] = 30
    path = _nifti(tmp_path, name, arr, spacing=(0.8, 0.8, 5.0) if name == "body.nii.gz" else (0.5, 0.5, 5.0))
    with pytest.raises(InputError, match=message):
        read_volume(path)


def test_unreadable_inputs(tmp_path):
    (tmp_path / "fake.nii.gz").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        read_volume(tmp_path / "fake.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        read_volume(tmp_path / "empty")
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.dcm").write_bytes(b"DICM" + b"\0" * 200)
    with pytest.raises(InputError, match="readable DICOM"):
        read_volume(tmp_path / "junk")
    (tmp_path / "p.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="--spacing"):
        read_volume(tmp_path / "p.png")


def test_windowed_png_maps_grey_back_to_hu(tmp_path):
    from PIL import Image

    grey = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    Image.fromarray(grey).convert("RGB").save(tmp_path / "s.png")
    vol = read_volume(tmp_path / "s.png", spacing=(0.5, 0.5, 5.0), png_window=(40, 80))
    assert vol.hu.shape == (1, 64, 256)
    inside = vol.hu[0, 0, 1:255]
    assert abs(inside.min() - 80 / 255) < 1e-3 and abs(inside.max() - 80 * 254 / 255) < 1e-3, "the window's HU"
    assert vol.hu[0, 0, 0] == -1000 and vol.hu[0, 0, 255] == 1000, "black is air, white is bone"


def test_case_names():
    from pathlib import Path

    assert case_name(Path("/x/ct.nii.gz")) == "ct" and case_name(Path("/x/a.b.nrrd")) == "a.b"


def test_slices_without_position_get_itk_geometry(tmp_path):
    """No ImagePositionPatient (or a PNG): voxel (0, 0) at the origin, as ITK/SimpleITK and Slicer
    read such files, so findings line up with masks read by those tools."""
    path = shared("ct-ich-slices", "hemo_subset", "049_21.dcm")
    vol = read_volume(path, spacing=(0.45, 0.45, 5.0))
    img = sitk.ReadImage(str(path))
    itk_origin = list(img.GetOrigin()) + [0.0] * (3 - img.GetDimension())
    assert np.allclose(vol.ijk_to_lps[:3, 3], itk_origin) and np.allclose(itk_origin, 0.0)
