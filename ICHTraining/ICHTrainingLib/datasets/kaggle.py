"""Kaggle "Head CT – hemorrhage" (F. Kitamura): images/NNN.png (8-bit windowed, some RGB) + labels.csv
(`id, hemorrhage`). Slice-level labels only: no masks, boxes or subtypes."""
import csv
from pathlib import Path


def read_labels(folder):
    """[(png path, 0|1)] in id order."""
    folder = Path(folder)
    out = []
    with open(folder / "labels.csv", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if row:
                out.append((folder / "images" / f"{int(row[0]):03d}.png", int(row[1])))
    return out
