"""The bad-input corpus, generated here (no files from elsewhere): each case is a path (or a
setting) that the extension must refuse with a one-line message, or accept with a warning."""
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _nifti(folder: Path, name, arr, spacing=(0.5, 0.5, 5.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    path = folder / name
    sitk.WriteImage(img, str(path))
    return path


def refused_inputs(folder: Path):
    """{case: (path, words the message must contain, extra CLI args)} — each must be refused."""
    from PIL import Image

    from ICHLocalizationLib.phantom import generate, write_dicom_series

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cases = {}
    cases["MR volume"] = (_nifti(folder, "mr.nii.gz", (rng.random((24, 128, 128)) * 900).astype(np.int16)), "not a CT", [])
    body = np.full((8, 512, 512), -1000, np.int16)
    yy, xx = np.mgrid[-256:256, -256:256]
    body[:, np.hypot(xx, yy * 1.6) < 240] = 40
    body[:, 300:310, 150:350] = 800
    cases["chest CT (not a head)"] = (_nifti(folder, "chest.nii.gz", body, (0.8, 0.8, 5.0)), "not a head", [])
    cases["constant volume"] = (_nifti(folder, "zeros.nii.gz", np.zeros((24, 128, 128), np.int16)), "constant", [])
    cases["NaN values"] = (_nifti(folder, "nan.nii.gz", np.full((24, 64, 64), np.nan, np.float32)), "NaN", [])
    inf = np.zeros((8, 64, 64), np.float32)
    inf[3, 3, 3] = np.inf
    cases["infinite values"] = (_nifti(folder, "inf.nii.gz", inf), "infinite", [])
    cases["tiny 2D image"] = (_nifti(folder, "tiny.nii.gz", np.zeros((1, 8, 8), np.int16)), "too small", [])
    (folder / "empty").mkdir(exist_ok=True)
    cases["empty folder"] = (folder / "empty", "empty", [])
    (folder / "fake.nii.gz").write_text("not an image")
    cases["text named .nii.gz"] = (folder / "fake.nii.gz", "not a readable image", [])
    cases["missing path"] = (folder / "does-not-exist.nii.gz", "no such file", [])
    photo = np.zeros((128, 128, 3), np.uint8)
    photo[..., 0] = 200
    photo[40:90, 40:90] = (20, 180, 60)
    Image.fromarray(photo).save(folder / "photo.png")
    cases["RGB photo"] = (folder / "photo.png", "colour image", ["--spacing", "0.5,0.5,5"])
    Image.fromarray(photo[..., 0]).save(folder / "slice.png")
    cases["PNG without spacing"] = (folder / "slice.png", "--spacing", [])
    ph = generate(5, size=128, slices=8)
    write_dicom_series(ph, folder / "series")
    (folder / "trunc").mkdir(exist_ok=True)
    for d in sorted((folder / "series").glob("*.dcm"))[:3]:
        (folder / "trunc" / d.name).write_bytes(d.read_bytes()[:300])
    cases["truncated DICOM files"] = (folder / "trunc", "DICOM", [])
    (folder / "notimage").mkdir(exist_ok=True)
    (folder / "notimage" / "report.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    cases["non-image DICOM"] = (folder / "notimage", "DICOM", [])
    import pydicom

    (folder / "nopos").mkdir(exist_ok=True)
    for d in sorted((folder / "series").glob("*.dcm")):
        ds = pydicom.dcmread(str(d))
        del ds.ImagePositionPatient
        ds.save_as(str(folder / "nopos" / d.name))
    cases["DICOM without position"] = (folder / "nopos", "ImagePositionPatient", [])
    return cases


def _cut(src: Path, dst: Path, keep):
    """A copy of src holding only its first `keep` bytes (an int, or a fraction of its length)."""
    data = src.read_bytes()
    dst.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    return dst


def _series_copy(series: Path, folder: Path, name: str, change=None):
    """A copy of a DICOM series folder; `change(files)` damages the copy in place."""
    import shutil

    target = folder / name
    shutil.copytree(series, target)
    files = sorted(target.glob("*.dcm"))
    if change is not None:
        change(files)
    return target


def damaged_inputs(folder: Path):
    """{case: (path, words the message must contain)}: files damaged on their way from a scanner to a
    disk (cut short, corrupted, missing a part). Each must be refused before any method runs."""
    from ICHLocalizationLib.phantom import generate

    folder.mkdir(parents=True, exist_ok=True)
    ph = generate(6, size=128, slices=10)
    hu = ph.volume.hu.astype(np.int16)
    return {**_damaged_itk(folder, hu), **_damaged_dicom(folder, ph), **_damaged_images(folder, hu)}


def _damaged_itk(folder: Path, hu):
    """NIfTI, NRRD and MetaImage files cut, corrupted or missing their data file."""
    import gzip

    whole = _nifti(folder, "whole.nii.gz", hu)
    raw = _nifti(folder, "whole.nii", hu)
    cases = {}
    cases["NIfTI.gz cut in half"] = (_cut(whole, folder / "half.nii.gz", 0.5), "ends early")
    flipped = bytearray(whole.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (folder / "flipped.nii.gz").write_bytes(bytes(flipped))
    cases["NIfTI.gz with a corrupted byte"] = (folder / "flipped.nii.gz", "corrupted")
    cases["NIfTI cut short"] = (_cut(raw, folder / "short.nii", 0.7), "header promises")
    header = bytearray(gzip.decompress(whole.read_bytes()))
    header[46:48] = np.int16(hu.shape[0] + 6).tobytes()  # dim[3]: more slices than the file holds
    (folder / "promises-more.nii.gz").write_bytes(gzip.compress(bytes(header)))
    cases["NIfTI header promising more slices"] = (folder / "promises-more.nii.gz", "header promises")
    cases["NIfTI.gz of 0 bytes"] = (_cut(whole, folder / "empty.nii.gz", 0), "0 bytes")
    cases["NIfTI.gz cut inside its header"] = (_cut(whole, folder / "head-only.nii.gz", 40), "damaged")
    cases["NRRD cut short"] = (_cut(_itk(folder, "whole.nrrd", hu), folder / "short.nrrd", 0.6), "damaged")
    detached = _itk(folder, "detached.nhdr", hu, compress=False)
    _cut(folder / "detached.raw", folder / "detached.raw", 0.8)
    cases["NRRD with its data file cut"] = (detached, "header promises")
    lost = _itk(folder, "lost.nhdr", hu, compress=False)
    (folder / "lost.raw").unlink()
    cases["NRRD without its data file"] = (lost, "missing")
    cases["MetaImage cut short"] = (_cut(_itk(folder, "whole.mha", hu), folder / "short.mha", 0.6), "damaged")
    meta = _itk(folder, "meta.mhd", hu, compress=False)
    (folder / "meta.raw").unlink()
    cases["MetaImage without its data file"] = (meta, "missing")
    return cases


def _damaged_dicom(folder: Path, ph):
    """A DICOM series with a slice cut, emptied or missing; single files cut or over-promising."""
    import pydicom

    from ICHLocalizationLib.phantom import write_dicom_series

    cases = {}
    series = folder / "series"
    write_dicom_series(ph, series)
    cases["DICOM slice cut in its pixel data"] = (_series_copy(series, folder, "cut-pixels", lambda f: _cut(f[4], f[4], 0.8)),
                                                  "pixel data holds")
    cases["DICOM slice cut before its pixel data"] = (_series_copy(series, folder, "cut-header", lambda f: _cut(f[4], f[4], 300)),
                                                      "cut short")
    cases["DICOM slice of 0 bytes"] = (_series_copy(series, folder, "zero-byte", lambda f: _cut(f[4], f[4], 0)), "0 bytes")
    cases["DICOM series missing a slice"] = (_series_copy(series, folder, "gap", lambda f: f[4].unlink()), "missing")
    single = sorted(series.glob("*.dcm"))[5]
    cases["single DICOM file cut short"] = (_cut(single, folder / "single.dcm", 0.9), "pixel data holds")
    ds = pydicom.dcmread(str(single))
    ds.Rows = ds.Rows + 16  # a header that promises more rows than the pixel data holds
    ds.save_as(str(folder / "rows.dcm"))
    cases["DICOM header promising more rows"] = (folder / "rows.dcm", "pixel data holds")
    return cases


def _damaged_images(folder: Path, hu):
    """8-bit PNG and JPEG slices cut short."""
    from PIL import Image

    cases = {}
    grey = np.clip((hu[5] + 40) * 255 / 80, 0, 255).astype(np.uint8)
    Image.fromarray(grey).save(folder / "whole.png")
    cases["PNG cut short"] = (_cut(folder / "whole.png", folder / "short.png", 0.5), "damaged")
    Image.fromarray(grey).save(folder / "whole.jpg", quality=95)
    cases["JPEG cut short"] = (_cut(folder / "whole.jpg", folder / "short.jpg", 0.5), "damaged")
    return cases


def _itk(folder: Path, name, arr, compress=True):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.5, 5.0))
    sitk.WriteImage(img, str(folder / name), compress)
    return folder / name
