"""What the U-Net learns from on real scans: the clot inside a hematoma box, empty masks on slices
known to be bleed-free, nothing on the other slices."""
import numpy as np
import pytest

from ICHTrainingLib.pseudo_masks import MIN_CLOT_PIXELS, blood_in_boxes, clots_on_grid, pixel_supervision


def _slice_with_clot(rng, clot=True):
    """128×128: skull (1000 HU) ring, brain 32 ± 4 HU, a 65 HU disc of radius 12 at (60, 70) if clot,
    and a box (rows 40-85, columns 45-95) painted IPH around it."""
    jj, ii = np.mgrid[:128, :128]
    r = np.hypot(jj - 64, ii - 64)
    hu = np.where(r < 55, 32 + rng.normal(0, 4, (128, 128)), np.where(r < 60, 1000.0, -1000.0))
    disc = np.hypot(jj - 60, ii - 70) < 12
    if clot:
        hu[disc] = 65 + rng.normal(0, 4, disc.sum())
    box = np.zeros((128, 128), np.uint8)
    box[40:86, 45:96] = 1
    return hu.astype(np.float32), box, disc


def test_the_clot_in_a_box_is_its_pseudo_mask_and_a_clotless_box_teaches_nothing():
    rng = np.random.default_rng(0)
    with_clot, box, disc = _slice_with_clot(rng)
    without, _, _ = _slice_with_clot(rng, clot=False)
    hu, boxes = np.stack([with_clot, without]), np.stack([box, box])
    mask = blood_in_boxes(hu, boxes)
    dice = 2 * (mask[0].astype(bool) & disc).sum() / (mask[0].astype(bool).sum() + disc.sum())
    assert dice > 0.9 and set(np.unique(mask[0])) == {0, 1}
    assert not mask[0][box == 0].any() and not mask[1].any()
    record = {"patient": "phe-x", "truth": "boxes", "crop_hu": hu.astype(np.float16), "crop_labels": boxes,
              "slice_subtypes": np.array([[True, False, False, False, False]] * 2)}
    supervised = pixel_supervision(record)
    assert supervised["labelled_slices"].tolist() == [True, False], "a box without its clot says nothing of pixels"
    assert np.array_equal(supervised["crop_labels"], mask)
    # the same from a scan's per-slice boxes on its own grid (U-Net tuning on PHE-SICH)
    clots, labelled = clots_on_grid(hu, [[(40, 45, 85, 95)], [(40, 45, 85, 95)]])
    assert np.array_equal(clots, mask > 0) and labelled.tolist() == [True, False]


def test_slice_labelled_scans_teach_their_bleed_free_slices_only():
    from ICHTrainingLib.families.unet import unet_patch_index

    subtypes = np.zeros((4, 5), bool)
    subtypes[1, 0] = subtypes[2, 3] = True
    record = {"patient": "ctich-x", "truth": "slices", "crop_hu": np.zeros((4, 8, 8), np.float16),
              "crop_labels": np.ones((4, 8, 8), np.uint8), "slice_subtypes": subtypes}
    supervised = pixel_supervision(record)
    assert not supervised["crop_labels"].any() and supervised["labelled_slices"].tolist() == [True, False, False, True]
    pos, by_subtype, every = unet_patch_index([supervised])
    assert not pos and not by_subtype and [k for _, k in every] == [0, 3]
    with pytest.raises(ValueError, match="unknown truth"):
        pixel_supervision(dict(record, truth="points"))


def test_phe_clots_lie_in_their_boxes_and_are_denser_than_brain(phe_fold0_records):
    """On the real PHE-SICH scans of fold 0: every clot inside its box, most box slices get one, and
    the clot is at least 10 HU denser than the rest of its box."""
    box_slices = clot_slices = 0
    for record in phe_fold0_records:
        boxes, hu = record["crop_labels"], record["crop_hu"].astype(np.float32)
        clots = pixel_supervision(record)["crop_labels"]
        assert not clots[boxes == 0].any()
        for k in np.nonzero(clots.any(axis=(1, 2)))[0]:
            clot, rest = clots[k] > 0, (boxes[k] > 0) & (clots[k] == 0) & (hu[k] > 0) & (hu[k] < 100)
            assert hu[k][clot].mean() >= hu[k][rest].mean() + 10
            assert clot.sum() >= MIN_CLOT_PIXELS and clot.sum() < 0.8 * (boxes[k] > 0).sum()
        box_slices += int(boxes.any(axis=(1, 2)).sum())
        clot_slices += int(clots.any(axis=(1, 2)).sum())
    assert clot_slices >= 0.8 * box_slices, (clot_slices, box_slices)
