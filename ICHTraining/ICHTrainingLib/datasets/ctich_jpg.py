"""PhysioNet CT-ICH v1.0.0 (Hssayeni et al. 2020) as released in JPG: `PPP/brain/S.jpg` and
`PPP/bone/S.jpg` (slice S, 1 = lowest), 650×650, the same slice in the brain window L40/W120 and the
bone window L700/W3200, with per-slice subtypes in `hemorrhage_diagnosis.csv`.

HU come back from the two windows: the brain window where it is not saturated (0.47 HU per grey
level), the bone window elsewhere (12.5 HU per level); a slice whose bone JPG is missing keeps the
brain window, its saturated pixels set to air and bone (`dewindow`). Geometry: 5 mm slices, anterior
up (radiological view), pixel size 0.34 mm — not stored; the skull's front-to-back length, median
549 px at mid-head on the first 12 scans, is an adult's 185–190 mm at that size (the paper says 0.33).
"""
from pathlib import Path

import numpy as np

from ICHLocalizationLib.io import dewindow, window_to_hu
from ICHLocalizationLib.volume import CTVolume

from .ctich import read_diagnosis_csv

CSV_NAME = "hemorrhage_diagnosis.csv"
PIXEL_MM = 0.34
SLICE_MM = 5.0
BRAIN_WINDOW = (40.0, 120.0)
BONE_WINDOW = (700.0, 3200.0)
SATURATION_MARGIN = 3  # grey levels of JPEG ringing kept away from the window's ends


def slice_hu(brain_jpg: Path, bone_jpg: Path) -> np.ndarray:
    from PIL import Image

    brain = np.asarray(Image.open(brain_jpg).convert("L"), np.float32)
    if not bone_jpg.exists():
        return dewindow(brain, BRAIN_WINDOW)
    bone = np.asarray(Image.open(bone_jpg).convert("L"), np.float32)
    inside = (brain >= SATURATION_MARGIN) & (brain <= 255 - SATURATION_MARGIN)
    return np.where(inside, window_to_hu(brain, BRAIN_WINDOW), window_to_hu(bone, BONE_WINDOW)).astype(np.float32)


def patients(folder):
    """Patient folder names (e.g. '049') in order."""
    return sorted(p.name for p in Path(folder).iterdir() if (p / "brain").is_dir())


def read_scan(folder, patient: str):
    """(CTVolume in HU, per-slice subtype sets in slice order) of one patient."""
    from ICHLocalizationLib.findings import SUBTYPES

    folder = Path(folder)
    brains = sorted((folder / patient / "brain").glob("*.jpg"), key=lambda p: int(p.stem))
    hu = np.stack([slice_hu(b, folder / patient / "bone" / b.name) for b in brains])
    diagnosis = read_diagnosis_csv(folder / CSV_NAME)
    subtypes = [diagnosis.get((int(patient), int(b.stem)), set()) for b in brains]
    volume = CTVolume.from_lps(hu, (PIXEL_MM, PIXEL_MM, SLICE_MM), np.zeros(3), name=f"ctich-{patient}")
    volume.metadata["slice_subtypes"] = np.array([[s in subs for s in SUBTYPES] for subs in subtypes], bool)
    return volume, subtypes
