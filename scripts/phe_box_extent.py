"""What PHE-SICH's hematoma boxes enclose: the clot alone, or the clot with its perihematomal edema.

    python scripts/phe_box_extent.py [--data DIR]   (DIR: the phe-sich folder; default from ICH_DATA)

For every box: the IoU with its clot's bounding box (the pseudo-mask the U-Net learns from, so the
best box a blood segmenter can draw) and with the bounding box of the clot and the dataset's edema
mask together, and the margin the annotator left around that union. The answer bounds what a 2D box
F1 at IoU >= 0.4 can ask of the U-Net on PHE (docs/accuracy.md).
"""
import argparse
from pathlib import Path

import numpy as np

from ICHTrainingLib.datasets import phe
from ICHTrainingLib.datasets.real import FOLDERS, default_data_root
from ICHTrainingLib.metrics import box_iou_2d
from ICHTrainingLib.pseudo_masks import clots_on_grid


def bounding_box(mask):
    rows, cols = np.nonzero(mask)
    return (rows.min(), cols.min(), rows.max(), cols.max()) if rows.size else None


def box_rows(folder: Path):
    """One row per box: (IoU with the clot's box, IoU with the clot-and-edema box, margin in pixels)."""
    boxes = phe.read_boxes(folder)
    for patient in phe.patients(folder):
        volume, per_slice = phe.read_scan(folder, patient, boxes)
        clot, _ = clots_on_grid(volume.hu.astype(np.float32), per_slice)
        edema = phe.read_edema(folder, patient)
        for k, slice_boxes in enumerate(per_slice):
            for box in slice_boxes:
                inside = np.zeros(clot.shape[1:], bool)
                inside[box[0]:box[2] + 1, box[1]:box[3] + 1] = True
                clot_box = bounding_box(clot[k] & inside)
                union_box = bounding_box((clot[k] | edema[k]) & inside)
                yield (box_iou_2d(clot_box, box) if clot_box else np.nan,
                       box_iou_2d(union_box, box) if union_box and edema[k][inside].any() else np.nan,
                       min(union_box[0] - box[0], union_box[1] - box[1], box[2] - union_box[2],
                           box[3] - union_box[3]) if union_box else np.nan)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="the phe-sich folder")
    args = ap.parse_args(argv)
    folder = args.data or default_data_root() / FOLDERS["phe"]
    table = np.array(list(box_rows(folder)), float)
    print(f"{len(table)} boxes")
    for name, column in zip(("IoU, clot's box", "IoU, clot-and-edema box", "margin around it (px)"), table.T):
        v = column[np.isfinite(column)]
        share = f"  IoU >= 0.4: {np.mean(v >= 0.4):.0%}" if name.startswith("IoU") else ""
        print(f"{name:24s} n={v.size:3d}  median {np.median(v):.2f} (IQR {np.quantile(v, .25):.2f}–"
              f"{np.quantile(v, .75):.2f}){share}")


if __name__ == "__main__":
    main()
