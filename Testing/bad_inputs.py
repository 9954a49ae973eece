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
