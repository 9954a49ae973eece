"""The MIL detector (T, d, h in the documented order) and the papers' evaluation protocols."""
import numpy as np

from ICHLocalizationLib.detector import detect_peaks
from ICHTrainingLib.evaluate import connected_boxes_2d, slice_classification
from ICHTrainingLib.metrics import (bootstrap_ci, box_iou, dice, match_boxes, point_in_box_counts, slice_dices)


def blob(shape, centre, sigma, height):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return height * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma ** 2))


def test_threshold_distance_and_h_maxima():
    m = blob((64, 64), (20, 20), 2, 0.9) + blob((64, 64), (20, 28), 2, 0.8) + blob((64, 64), (50, 50), 4, 0.3)
    rows, cols, vals = detect_peaks(m, h=0.0, T=0.5, d=2)
    assert set(zip(rows.tolist(), cols.tolist())) == {(20, 20), (20, 28)} and all(v > 0.5 for v in vals)
    assert (50, 50) not in set(zip(rows, cols)), "below T"
    rows_d, _, _ = detect_peaks(m, h=0.0, T=0.5, d=10)
    assert len(rows_d) == 1, "the two close maxima merge at d = 10"
    # h-maxima keeps only maxima that rise more than h above their surroundings
    shallow = np.full((32, 32), 0.6) + blob((32, 32), (16, 16), 2, 0.01)
    assert len(detect_peaks(shallow, h=0.0, T=0.5, d=1)[0]) >= 1
    assert len(detect_peaks(shallow, h=0.05, T=0.5, d=1)[0]) == 0


def test_smoothing_merges_the_lattice_maxima_of_one_bleed():
    """A map upsampled bilinearly from a coarse grid (as the max-pool map is, ×8) peaks on the coarse
    nodes: two near-equal nodes give two points; smoothed (sigma, px) they give one between them,
    its value read off the smoothed map."""
    from skimage.transform import resize

    coarse = np.zeros((16, 16))
    coarse[6:11, 6:11], coarse[7:10, 7:10], coarse[8, [7, 9]] = 0.4, 0.75, 0.8
    m = resize(coarse, (128, 128), order=1)
    rows, cols, _ = detect_peaks(m, h=0.0, T=0.5, d=3)
    assert len(rows) == 2 and abs(cols[0] - cols[1]) == 15
    rows, cols, vals = detect_peaks(m, h=0.0, T=0.5, d=3, sigma=6.0)
    assert list(zip(rows, cols)) == [(67, 67)] and 0.5 < vals[0] < m[67, 67]


def test_peaks_at_the_border_are_kept():
    m = blob((40, 40), (0, 20), 3, 0.9)
    rows, cols, _ = detect_peaks(m, h=0.0, T=0.5, d=10)
    assert list(zip(rows, cols)) == [(0, 20)]


def test_point_in_box_hand_computed():
    # slice with two lesions; points: one in A, two in B, one outside both
    mask = np.zeros((20, 20), bool)
    mask[2:5, 2:6] = True  # A rows 2-4 cols 2-5
    mask[10:15, 10:12] = True  # B rows 10-14 cols 10-11
    boxes = connected_boxes_2d(mask)
    assert boxes == [(2, 4, 2, 5), (10, 14, 10, 11)]
    tp, fp, fn = point_in_box_counts([(3, 3), (11, 10), (14, 11), (18, 1)], boxes, margin=0)
    assert (tp, fp, fn) == (2, 1, 0)
    assert point_in_box_counts([], boxes) == (0, 0, 2)
    assert point_in_box_counts([(5, 5)], []) == (0, 1, 0), "a point on a negative slice is an FP"


def test_box_iou_and_matching():
    a = {"min": [0, 0, 0], "max": [10, 10, 10]}
    b = {"min": [5, 0, 0], "max": [15, 10, 10]}
    assert np.isclose(box_iou(a, b), 500 / 1500)
    assert box_iou(a, {"min": [20, 20, 20], "max": [30, 30, 30]}) == 0.0
    pred = [{"bbox_ras": b}, {"bbox_ras": a}]
    truth = [{"bbox_ras": a}]
    matches, fps, fns = match_boxes(pred, truth, 0.4)
    assert matches == [(1, 0, 1.0)] and fps == [0] and fns == []


def test_dice_and_slice_metrics():
    t = np.zeros((3, 4, 4), bool)
    t[1, :2, :2] = True
    p = np.zeros_like(t)
    p[1, :2, :1] = True
    assert np.isclose(dice(p, t), 2 * 2 / (2 + 4))
    assert slice_dices(p, t) == [dice(p[1], t[1])]
    m = slice_classification([1, 1, 0, 0], [0.9, 0.4, 0.2, 0.6])
    assert m["auc"] == 0.75 and m["recall"] == 0.5 and np.isclose(m["f1"], 0.5)


def test_patient_bootstrap_brackets_the_estimate():
    per = [{"x": v} for v in np.linspace(0, 1, 20)]
    lo, hi = bootstrap_ci(per, lambda s: float(np.mean([r["x"] for r in s])), n=300)
    assert lo < 0.5 < hi and hi - lo < 0.5


def test_label_boxes_one_per_lesion():
    from ICHTrainingLib.evaluate import boxes_per_label_2d

    lab = np.zeros((10, 10), np.uint8)
    lab[1:3, 1:3] = 2
    lab[6:8, 6:9] = 2  # the same lesion in two pieces: one box
    lab[4, 4] = 5
    assert boxes_per_label_2d(lab) == [(1, 7, 1, 8), (4, 4, 4, 4)]
