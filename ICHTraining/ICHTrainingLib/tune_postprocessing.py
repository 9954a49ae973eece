"""Tuning of the cascade's neighbour fusion and the U-Net's thresholds on validation scans.

Both use cached validation records (never seeds 9001–9010): the networks run once per scan, then
each candidate setting is scored with the protocol its method is judged by — 3D boxes matched at
IoU ≥ 0.4 (paper 000) for the cascade, Dice for the U-Net.
"""
import numpy as np

from ICHLocalizationLib.findings import SUBTYPES
from ICHLocalizationLib.methods.cascade3d import PLANES, ThreePlaneCascade, fuse, plane_slices
from ICHLocalizationLib.methods.unet_segmenter import UNetSegmenter
from ICHLocalizationLib.models import ModelEntry, load_state
from ICHLocalizationLib.preprocessing import half_crop

from .evaluate import box_iou, match_boxes

FUSION_KERNELS = ([1.0], [0.15, 0.7, 0.15], [0.25, 0.5, 0.25], [0.1, 0.2, 0.4, 0.2, 0.1])
FUSION_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


def _index_box(k, j, i):
    return {"min": [i[0] - 0.5, j[0] - 0.5, k[0] - 0.5], "max": [i[1] + 0.5, j[1] + 0.5, k[1] + 0.5]}


def truth_grid_boxes(labels):
    """One box per subtype present on the cascade grid (the phantom has one lesion per subtype)."""
    out = []
    for s, code in enumerate(SUBTYPES, start=1):
        kji = np.argwhere(labels == s)
        if len(kji):
            lo, hi = kji.min(0), kji.max(0)
            out.append({"subtype": code, "bbox_ras": _index_box((lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2]))})
    return out


def tune_cascade(entry: ModelEntry, records):
    method = ThreePlaneCascade(entry, load_state(entry), "cpu")
    raw = []
    for r in records:
        grid = r["casc_hu"].astype(np.float32)
        raw.append((grid, {p: method.plane_probabilities(plane_slices(grid, p), p, kernel=[1.0]) for p in PLANES},
                    truth_grid_boxes(r["casc_labels"])))
    results = []
    for kernel in FUSION_KERNELS:
        for thr in FUSION_THRESHOLDS:
            tp = fp = fn = right = 0
            for grid, probs, truth in raw:
                fused = {p: np.stack([fuse(v[:, c], kernel) for c in range(v.shape[1])], axis=1) for p, v in probs.items()}
                pred = [{"subtype": code, "bbox_ras": _index_box(k, j, i)} for code, k, j, i, _ in method.grid_boxes(fused, grid, thr)]
                matches, fps, fns = match_boxes(pred, truth, 0.4)
                tp, fp, fn = tp + len(matches), fp + len(fps), fn + len(fns)
                right += sum(pred[a]["subtype"] == truth[b]["subtype"] for a, b, _ in matches)
            se, ppv = tp / max(1, tp + fn), tp / max(1, tp + fp)
            results.append({"kernel": kernel, "threshold": thr, "se": se, "ppv": ppv, "f1": 2 * se * ppv / max(1e-9, se + ppv),
                            "subtype_acc": right / max(1, tp)})
    best = max(results, key=lambda r: (r["f1"], r["subtype_acc"]))
    return best, results


def tune_unet(entry: ModelEntry, records, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7), gate_thresholds=(0.2, 0.35, 0.5)):
    """Per-scan Dice on the head-crop grid for each (threshold, gate threshold); the best mean Dice."""
    method = UNetSegmenter(entry, load_state(entry), "cpu")
    cache = []
    for r in records:
        hu = r["crop_hu"].astype(np.float32)
        gate = method.gate_probabilities(half_crop(hu))
        fg = 1.0 - method.class_probabilities(hu)[:, 0]
        cache.append((gate, fg, r["crop_labels"] > 0))
    results = []
    for thr in thresholds:
        for gthr in gate_thresholds:
            dices = []
            for gate, fg, truth in cache:
                pred = (fg >= thr) & (gate >= gthr)[:, None, None]
                s = pred.sum() + truth.sum()
                dices.append(2 * (pred & truth).sum() / s if s else 1.0)
            results.append({"threshold": thr, "gate_threshold": gthr, "dice": float(np.mean(dices))})
    return max(results, key=lambda r: r["dice"]), results


__all__ = ["tune_cascade", "tune_unet", "truth_grid_boxes", "box_iou"]
