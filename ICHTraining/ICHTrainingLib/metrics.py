"""Every metric of training, tuning and evaluation, on the field's libraries: scikit-learn (ROC AUC),
MONAI (Dice, box IoU), SciPy (bootstrap). The papers' matching rules are kept exactly:

- paper 001 (MIL) `point_in_box_counts`: on each axial slice a lesion's 2D box is a TP when a point
  lies in it (±1 px), else an FN; a point in no box is an FP; counts are summed over slices.
- paper 000 (cascade) `match_boxes`: one-to-one, greedy by IoU, a TP at IoU ≥ 0.4 (3D boxes on
  phantoms; their 2D cross-sections per slice on PHE-SICH, `match_counts_2d`).
- paper 003 (U-Net) `dice`: voxel Dice; averaged over slices with a bleed (`slice_dices`) or per scan.
- paper 004 (slices) `roc_auc`, and recall/precision/F1 at 0.5 (`evaluate.slice_classification`).
"""
from typing import List

import numpy as np


def roc_auc(labels, scores) -> float:
    """ROC AUC (ties count half); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, bool)
    return float(roc_auc_score(labels, np.asarray(scores, float))) if 0 < labels.sum() < len(labels) else float("nan")


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Voxel Dice of two masks; 1 when both are empty (nothing to find, nothing found)."""
    import torch
    from monai.metrics import compute_dice

    p = torch.as_tensor(np.asarray(pred, bool), dtype=torch.float32)[None, None]
    t = torch.as_tensor(np.asarray(truth, bool), dtype=torch.float32)[None, None]
    return float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])


def slice_dices(pred: np.ndarray, truth: np.ndarray) -> List[float]:
    """Paper 003: the Dice of each slice that has a ground-truth bleed."""
    return [dice(pred[k], truth[k]) for k in range(truth.shape[0]) if truth[k].any()]


def rates(tp: int, fp: int, fn: int) -> dict:
    """Se, PPV and Dice (= F1) from detection counts."""
    return {"se": tp / max(1, tp + fn), "ppv": tp / max(1, tp + fp), "dice": 2 * tp / max(1, 2 * tp + fp + fn)}


def box_iou(a, b) -> float:
    """IoU of two axis-aligned 3D boxes {'min': [..3], 'max': [..3]} (RAS, mm)."""
    from monai.data.box_utils import box_iou as monai_box_iou

    return float(monai_box_iou(np.array([[*a["min"], *a["max"]]], float), np.array([[*b["min"], *b["max"]]], float))[0, 0])


def box_iou_2d(a, b) -> float:
    """IoU of two inclusive pixel boxes (row0, col0, row1, col1)."""
    from monai.data.box_utils import box_iou as monai_box_iou

    half_open = lambda x: [x[0], x[1], x[2] + 1, x[3] + 1]  # noqa: E731 - a pixel box covers its last row
    return float(monai_box_iou(np.array([half_open(a)], float), np.array([half_open(b)], float))[0, 0])


def greedy_matches(ious: np.ndarray, threshold=0.4):
    """One-to-one matching, best pairs first, of an (n_pred, n_truth) IoU matrix → [(p, t, iou)]."""
    pairs = sorted(((ious[i, j], i, j) for i in range(ious.shape[0]) for j in range(ious.shape[1])), reverse=True)
    used_p, used_t, matches = set(), set(), []
    for v, i, j in pairs:
        if v >= threshold and i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matches.append((i, j, float(v)))
    return matches


def match_boxes(pred: List[dict], truth: List[dict], threshold=0.4):
    """Paper 000: 3D boxes (each with 'bbox_ras') → (matches [(p, t, iou)], unmatched preds, unmatched truths)."""
    ious = np.array([[box_iou(p["bbox_ras"], t["bbox_ras"]) for t in truth] for p in pred]).reshape(len(pred), len(truth))
    matches = greedy_matches(ious, threshold)
    hit_p, hit_t = {m[0] for m in matches}, {m[1] for m in matches}
    return matches, [i for i in range(len(pred)) if i not in hit_p], [j for j in range(len(truth)) if j not in hit_t]


def match_counts_2d(pred, truth, threshold=0.4):
    """(tp, fp, fn) of one slice's 2D pixel boxes, matched one-to-one at IoU ≥ threshold."""
    ious = np.array([[box_iou_2d(p, t) for t in truth] for p in pred]).reshape(len(pred), len(truth))
    tp = len(greedy_matches(ious, threshold))
    return tp, len(pred) - tp, len(truth) - tp


def point_in_box_counts(points, boxes, margin=1.0):
    """Paper 001 on one slice: points (N, 2) as (row, col), boxes (row0, row1, col0, col1) → (tp, fp, fn)."""
    hit = [False] * len(boxes)
    fp = 0
    for r, c in np.asarray(points, float).reshape(-1, 2):
        inside = [b for b, (r0, r1, c0, c1) in enumerate(boxes)
                  if r0 - margin <= r <= r1 + margin and c0 - margin <= c <= c1 + margin]
        for b in inside:
            hit[b] = True
        fp += not inside
    return sum(hit), fp, len(boxes) - sum(hit)


def bootstrap_ci(per_patient: List[dict], stat, n=1000, seed=0):
    """95 % percentile CI of stat(list of per-patient records), patients resampled with replacement
    (SciPy's bootstrap over patient indices); None with fewer than two patients or n = 0."""
    from scipy.stats import bootstrap

    if n <= 0 or len(per_patient) < 2:
        return None

    def statistic(index):
        value = stat([per_patient[int(i)] for i in index])
        return value if value is not None else np.nan

    import warnings

    with warnings.catch_warnings():  # a statistic undefined on some resamples (one class only) is expected
        warnings.simplefilter("ignore")
        res = bootstrap((np.arange(len(per_patient)),), statistic, n_resamples=n, method="percentile",
                        vectorized=False, random_state=np.random.default_rng(seed))
    values = res.bootstrap_distribution[np.isfinite(res.bootstrap_distribution)]  # e.g. an AUC of one class
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if len(values) else None
