"""PhysioNet CT-ICH (Hssayeni et al.): NIfTI scans + binary masks + per-slice subtype CSV, and the
26-slice DICOM subset (hemo_subset/PPP_SS.dcm, Masks_subset/PPP_SS.dcm) used for evaluation here.

CSV columns: PatientNumber, SliceNumber (1-based), Intraventricular, Intraparenchymal, Subarachnoid,
Epidural, Subdural, No_Hemorrhage, Fracture_Yes_No. Masks carry no subtype: a masked slice takes
the subtype its CSV row names (when several, the first of IPH, IVH, SDH, EDH, SAH — a documented
simplification for training the six-class U-Net).
"""
import csv
from pathlib import Path

import numpy as np

CSV_NAME = "hemorrhage_diagnosis_raw_ct.csv"
CSV_SUBTYPES = {"Intraparenchymal": "IPH", "Intraventricular": "IVH", "Subdural": "SDH", "Epidural": "EDH",
                "Subarachnoid": "SAH"}


def read_diagnosis_csv(path):
    """{(patient, slice): set of subtype codes} (slice numbers as in the CSV, 1-based)."""
    out = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            key = (int(row["PatientNumber"]), int(row["SliceNumber"]))
            out[key] = {code for col, code in CSV_SUBTYPES.items() if int(float(row[col] or 0))}
    return out


def read_slice_subset(folder):
    """The 26-slice subset: [{patient, slice, image, mask, subtypes}] joined with the CSV."""
    folder = Path(folder)
    diag = read_diagnosis_csv(folder / CSV_NAME)
    items = []
    for img in sorted((folder / "hemo_subset").glob("*.dcm")):
        patient, sl = (int(v) for v in img.stem.split("_"))
        items.append({"patient": patient, "slice": sl, "image": img, "mask": folder / "Masks_subset" / img.name,
                      "subtypes": sorted(diag.get((patient, sl), set()))})
    return items


def read_mask_dicom(path) -> np.ndarray:
    """A subset mask (−32768 background, 32767 bleed) → boolean (rows, cols)."""
    import pydicom

    return np.asarray(pydicom.dcmread(str(path)).pixel_array).reshape(512, 512) > 0


def scans(folder):
    """Full dataset layout: ct_scans/NNN.nii + masks/NNN.nii + the CSV → [(patient, ct, mask, {slice: subtypes})]."""
    folder = Path(folder)
    diag = read_diagnosis_csv(folder / CSV_NAME)
    out = []
    for ct in sorted((folder / "ct_scans").glob("*.nii*")):
        patient = int(ct.name.split(".")[0])
        mask = folder / "masks" / ct.name
        per_slice = {s: v for (p, s), v in diag.items() if p == patient}
        out.append((patient, ct, mask if mask.exists() else None, per_slice))
    return out


def records(folder, cache=None):
    """Training records for every scan (see phantom.scan_record)."""
    import SimpleITK as sitk

    from ICHLocalizationLib.findings import SUBTYPES
    from ICHLocalizationLib.io import read_volume

    from .phantom import scan_record

    out = []
    for patient, ct, mask, per_slice in scans(folder):
        vol = read_volume(ct, validate=False)
        labels = np.zeros(vol.shape, np.uint8)
        if mask is not None:
            m = sitk.GetArrayFromImage(sitk.ReadImage(str(mask))) > 0
            for k in range(vol.shape[0]):
                subs = per_slice.get(k + 1, set())
                code = next((c for c in ("IPH", "IVH", "SDH", "EDH", "SAH") if c in subs), "IPH")
                labels[k][m[k]] = 1 + SUBTYPES.index(code)
        out.append(scan_record(vol, labels, f"ctich-{patient:03d}"))
    return out
