"""RSNA 2019 Intracranial Hemorrhage Detection: one DICOM per slice (`ID_<sop>.dcm`) and a labels CSV
with rows `ID_<sop>_<type>,<0|1>` for epidural, intraparenchymal, intraventricular, subarachnoid,
subdural and any. Scans are rebuilt by StudyInstanceUID/SeriesInstanceUID and sorted by
ImagePositionPatient. Slice labels only (no masks): the MIL trainer reads them.

At ~25,000 scans the folder is read lazily (`iter_scans` yields one scan at a time, headers first)
and preprocessed slices are cached per scan, so a second epoch reads only the cache.
"""
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

TYPES = {"epidural": "EDH", "intraparenchymal": "IPH", "intraventricular": "IVH", "subarachnoid": "SAH",
         "subdural": "SDH", "any": "any"}


def read_labels(path):
    """{sop id ('ID_xxxxxxxxx'): {code: 0|1}} from the competition CSV (header `ID,Label`)."""
    out = defaultdict(dict)
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[0].startswith("ID_") or row[1] == "":
                continue
            ident, typ = row[0].rsplit("_", 1)
            if typ in TYPES:
                out[ident][TYPES[typ]] = int(float(row[1]))
    return dict(out)


def group_series(dicom_dir):
    """{(study uid, series uid): [(z, path)]} sorted by position along the slice normal."""
    import pydicom

    groups = defaultdict(list)
    for p in sorted(Path(dicom_dir).rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - unreadable files are skipped
            continue
        iop = np.array([float(v) for v in getattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
        normal = np.cross(iop[:3], iop[3:])
        z = float(np.dot([float(v) for v in getattr(ds, "ImagePositionPatient", [0, 0, 0])], normal))
        groups[(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))].append((z, p))
    return {k: sorted(v) for k, v in groups.items()}


def iter_scans(dicom_dir, labels):
    """Yield (patient key, [paths in order], slice labels (n, 5) bool) per rebuilt scan."""
    from ICHLocalizationLib.findings import SUBTYPES

    for (study, series), members in group_series(dicom_dir).items():
        paths = [p for _, p in members]
        lab = np.array([[labels.get(p.stem, {}).get(s, 0) for s in SUBTYPES] for p in paths], bool)
        yield f"rsna-{study}", paths, lab


def records(dicom_dir, labels_csv, cache_dir):
    """MIL training records (slice labels only), one cached .npz per rebuilt scan, built lazily."""
    import hashlib

    from ICHLocalizationLib.io import read_dicom_folder
    from ICHLocalizationLib.preprocessing import AXIAL_CROP_SIZE, head_crop, head_mask

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    labels = read_labels(labels_csv)
    out = []
    for patient, paths, lab in iter_scans(dicom_dir, labels):
        key = cache_dir / (hashlib.sha1(patient.encode() + str(paths[0]).encode()).hexdigest()[:16] + ".npz")
        if not key.exists():
            import shutil
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                for p in paths:
                    shutil.copy2(p, tmp)
                vol = read_dicom_folder(Path(tmp))
            crop = head_crop(head_mask(vol.hu))
            np.savez_compressed(key, patient=patient, crop_hu=crop.extract(vol.hu, AXIAL_CROP_SIZE).astype(np.float16),
                                slice_subtypes=lab)
        with np.load(key) as z:
            out.append({"patient": str(z["patient"]), "crop_hu": z["crop_hu"], "slice_subtypes": z["slice_subtypes"],
                        "crop_labels": None, "casc_hu": None, "casc_labels": None})
    return out
