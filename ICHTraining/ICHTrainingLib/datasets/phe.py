"""PHE-SICH-CT-IDS (Computers in Biology and Medicine 2024): 70 spontaneous intracerebral (IPH)
hemorrhage scans, `PPPP/images/SS.png` (SS = 00 lowest), 512×512 8-bit in the brain window L40/W80,
stored rotated with anterior at the image's left; hematoma boxes per slice in `boxes.csv` (pixels of
the stored image). The dataset's masks are perihematomal edema, not blood: read only to study what
the boxes enclose (`read_edema`, scripts/phe_box_extent.py), never trained on.

Each slice is turned anterior-up (`numpy.rot90(k=-1)`; left-right is not known, radiological view
assumed) and de-windowed (below the window: air, above it: bone), so the head and skull are found as
in any CT. Geometry: 5 mm slices, 0.45 mm pixels (not stored; the dataset's description).
"""
import csv
from pathlib import Path

import numpy as np

from ICHLocalizationLib.io import dewindow
from ICHLocalizationLib.volume import CTVolume

BOXES_CSV = "boxes.csv"
PIXEL_MM = 0.45
SLICE_MM = 5.0
WINDOW = (40.0, 80.0)
SIZE = 512


def patients(folder):
    return sorted(p.name for p in Path(folder).iterdir() if (p / "images").is_dir())


def read_boxes(folder):
    """{(patient, slice): [(row0, col0, row1, col1)]} in the anterior-up image (pixel rows/columns, inclusive)."""
    out = {}
    with open(Path(folder) / BOXES_CSV, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault((row["patient"], int(row["slice"])), []).append(
                rotate_box(int(row["xmin"]), int(row["ymin"]), int(row["xmax"]), int(row["ymax"])))
    return out


def rotate_box(xmin, ymin, xmax, ymax, size=SIZE):
    """A stored-image box after rot90(k=-1): stored (row y, column x) goes to (row x, column size-1-y)."""
    return xmin, size - 1 - ymax, xmax, size - 1 - ymin


def read_scan(folder, patient: str, boxes=None):
    """(CTVolume in HU, per-slice boxes [(row0, col0, row1, col1)], anterior up)."""
    from ICHLocalizationLib.findings import SUBTYPES

    folder = Path(folder)
    boxes = read_boxes(folder) if boxes is None else boxes
    pngs = _slice_pngs(folder / patient / "images")
    grey = _anterior_up(pngs)
    volume = CTVolume.from_lps(dewindow(grey, WINDOW), (PIXEL_MM, PIXEL_MM, SLICE_MM), np.zeros(3), name=f"phe-{patient}")
    per_slice = [boxes.get((patient, int(p.stem)), []) for p in pngs]
    volume.metadata["slice_subtypes"] = np.array([[bool(b) and s == "IPH" for s in SUBTYPES] for b in per_slice], bool)
    return volume, per_slice


def read_edema(folder, patient: str) -> np.ndarray:
    """(k, j, i) bool: the dataset's perihematomal edema masks, anterior up like read_scan's slices."""
    return _anterior_up(_slice_pngs(Path(folder) / patient / "masks")) > 0


def _slice_pngs(directory: Path):
    return sorted(directory.glob("*.png"), key=lambda p: int(p.stem))


def _anterior_up(pngs) -> np.ndarray:
    """The stored 8-bit slices as one float32 stack, each turned anterior-up (rot90, k=-1)."""
    from PIL import Image

    return np.stack([np.rot90(np.asarray(Image.open(p).convert("L"), np.float32), k=-1) for p in pngs])
