"""What the U-Net learns from on real scans that have no blood masks.

- A slice known to hold no ICH is a fully labelled slice: its mask is empty.
- PHE-SICH's hematoma boxes bound the blood: the pseudo-mask of a box is its blood-dense pixels, the
  pixels brighter than both the box's Otsu threshold and the slice's brain by 10 HU, opened by one
  pixel, the largest such region (if at least 20 pixels), holes filled (a hematoma is one compact clot in its box).
- A slice known to hold ICH but without a box (CT-ICH) says nothing about its pixels: it is left out.

The boxes are 5–20 times larger than the blood in them (docs/accuracy.md), so painting the box
would teach the U-Net to outline a rectangle.
"""
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.measure import label

BRAIN_HU = (15.0, 45.0)  # parenchyma and grey matter, for the slice's brain level
ABOVE_BRAIN_HU = 10.0
MAX_BLOOD_HU = 100.0  # the de-windowed "bone" above the brain window is not blood
MIN_CLOT_PIXELS = 20  # about 13 mm² on the 256 head crop: smaller is noise left by the opening


def blood_in_boxes(hu: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(k, j, i) subtype map of the blood inside each box of `boxes` (a label map of painted boxes,
    the subtype index inside each), from the HU of the same grid."""
    out = np.zeros_like(boxes)
    for k in np.nonzero(boxes.any(axis=(1, 2)))[0]:
        brain = hu[k][(hu[k] > BRAIN_HU[0]) & (hu[k] < BRAIN_HU[1])]
        brain_level = float(np.median(brain)) if brain.size else float(np.mean(BRAIN_HU))
        regions, n = ndi.label(boxes[k] > 0)
        for b in range(1, n + 1):
            inside = regions == b
            clot = _clot(hu[k], inside, brain_level)
            if clot is not None:
                out[k][clot] = boxes[k][inside].max()
    return out


def _clot(hu, inside, brain_level):
    """The largest blood-dense region in one box, holes filled; None when there is none."""
    tissue = inside & (hu > 0) & (hu < MAX_BLOOD_HU)
    if tissue.sum() < 10:
        return None
    threshold = max(threshold_otsu(hu[tissue]), brain_level + ABOVE_BRAIN_HU)
    dense = ndi.binary_opening(tissue & (hu >= threshold))
    regions = label(dense)
    sizes = np.bincount(regions.ravel())[1:]
    if not sizes.size or sizes.max() < MIN_CLOT_PIXELS:
        return None
    largest = 1 + int(np.argmax(sizes))
    return ndi.binary_fill_holes(regions == largest) & inside


def paint_boxes(shape, boxes_per_slice, label: int = 1) -> np.ndarray:
    """A (k, j, i) label map with each slice's boxes (row0, col0, row1, col1, inclusive) painted."""
    painted = np.zeros(shape, np.uint8)
    for k, boxes in enumerate(boxes_per_slice):
        for r0, c0, r1, c1 in boxes:
            painted[k, r0:r1 + 1, c0:c1 + 1] = label
    return painted


def clots(hu: np.ndarray, boxes: np.ndarray):
    """(clot label map, labelled slices) of painted boxes: the clot map speaks for the slices without
    a box and those whose boxes hold a clot (a box without one, a faint rim slice, says nothing)."""
    labels = blood_in_boxes(hu, boxes)
    return labels, labels.any(axis=(1, 2)) | ~boxes.any(axis=(1, 2))


def clots_on_grid(hu: np.ndarray, boxes_per_slice):
    """(clot mask, labelled slices) of a PHE-SICH scan on its own grid, from its per-slice hematoma boxes."""
    labels, labelled = clots(hu, paint_boxes(hu.shape, boxes_per_slice))
    return labels > 0, labelled


def pixel_supervision(record: dict) -> dict:
    """The record as the U-Net trains on it: `crop_labels` a mask (phantom: as drawn; PHE: blood in
    its boxes; CT-ICH: empty) and `labelled_slices`, the slices whose mask is the whole truth."""
    truth = record.get("truth", "mask")
    if truth == "mask":
        return {**record, "labelled_slices": np.ones(len(record["slice_subtypes"]), bool)}
    if truth == "boxes":
        labels, labelled = clots(record["crop_hu"].astype(np.float32), record["crop_labels"])
        return {**record, "crop_labels": labels, "labelled_slices": labelled}
    if truth == "slices":
        return {**record, "crop_labels": np.zeros_like(record["crop_labels"]),
                "labelled_slices": ~np.asarray(record["slice_subtypes"]).any(axis=1)}
    raise ValueError(f"{record['patient']}: unknown truth {truth!r}")
