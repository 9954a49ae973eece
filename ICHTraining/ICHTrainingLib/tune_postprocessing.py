"""Tuning of the cascade's neighbour fusion and the U-Net's post-processing on validation scans.

Both read validation scans (never seeds 9001–9010): the networks run once per scan, then each
candidate setting is scored with the protocol its method is judged by — the cascade's boxes mapped
back to the head and matched to the lesions' RAS boxes at IoU ≥ 0.4 (paper 000) or, on real scans,
cut through each slice (PHE-SICH's hematoma boxes at 2D IoU ≥ 0.4, CT-ICH's subtypes per slice);
for the U-Net, voxel Dice on the input grid (its closing, opening and minimum size are in mm and mL
of the input), on real scans against the clots in PHE's boxes and CT-ICH's ICH slices (scan_score).
"""
from typing import NamedTuple

import numpy as np

from ICHLocalizationLib.findings import SUBTYPES
from ICHLocalizationLib.methods.cascade3d import PLANES, ThreePlaneCascade, fuse_columns, plane_slices
from ICHLocalizationLib.methods.unet_segmenter import UNetSegmenter
from ICHLocalizationLib.models import ModelEntry, load_state
from ICHLocalizationLib.preprocessing import PreparedScan

from .evaluate import cascade_boxes_2d
from .metrics import dice, match_boxes, match_counts_2d, rates

FUSION_KERNELS = ([1.0], [0.15, 0.7, 0.15], [0.25, 0.5, 0.25], [0.1, 0.2, 0.4, 0.2, 0.1])
FUSION_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
STAGE1_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)  # P(ICH) a slice needs before the subtype nets read it
CLASSIFIER_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RUN_GAPS = (0, 1, 2, 3, 4, 6)  # slices below threshold bridged inside a run


def stage1_gated(probs, stage1):
    """Unfused plane probabilities read with every slice passed to the subtype nets, as they would be
    with a stage-1 threshold: the subtype columns set to 0 where P(ICH) is below it."""
    out = probs.copy()
    out[probs[:, 0] < stage1, 1:] = 0.0
    return out


def tune_cascade(entry: ModelEntry, scans, rounds: int = 3, protocol: str = "3d"):
    """The cascade's fusion on validation scans: stage-1 threshold, kernel and one fusion threshold
    by grid search, then the run gap and a threshold per plane and subtype by coordinate ascent
    (`rounds` passes) — each maximizing the F1 of boxes matched at IoU ≥ 0.4. The networks run once
    per scan (the subtype nets on every slice; the stage-1 gate is applied afterwards).
    protocol "3d" (paper 000): scans [(CTVolume, truth lesions with "subtype" and "bbox_ras")].
    "2d" (real scans): the cascade's boxes cut through each input slice, and each scan's truth is
    either its hematoma boxes per slice (PHE-SICH: matched at 2D IoU ≥ 0.4) or its subtypes per
    slice, a (slices, 5) array (CT-ICH: a slice's subtype is found when a box of it cuts the slice);
    the counts of both add up. Every subtype's thresholds are tuned, except on boxes alone: those
    are all IPH, so the other subtypes then keep the grid's. Returns (best, table of the grid search)."""
    if protocol not in ("3d", "2d"):
        raise ValueError(f"protocol {protocol!r}: '3d' (lesion boxes) or '2d' (per-slice truth)")
    method = ThreePlaneCascade(entry, load_state(entry), "cpu")
    raw = [_unfused(method, volume, truth) for volume, truth in scans]
    count = _counts_3d if protocol == "3d" else _counts_2d
    per_slice_subtypes = any(isinstance(r.truth, np.ndarray) for r in raw)

    def score(fused_scans, thresholds, gap=0):
        totals = np.zeros(4, int)
        for r, fused in zip(raw, fused_scans):
            totals += count(method.boxes(fused, r.grid, r.matrix, r.alignment, thresholds, gap), r.volume, r.truth)
        tp, fp, fn, right = totals
        return {**{k: v for k, v in rates(tp, fp, fn).items() if k != "dice"}, "f1": rates(tp, fp, fn)["dice"],
                "subtype_acc": right / max(1, tp)}

    best, results, fused = _grid_search(raw, score)
    tuned = SUBTYPES if protocol == "3d" or per_slice_subtypes else ("IPH",)
    per, gap = {p: [best["threshold"]] * len(SUBTYPES) for p in PLANES}, 0
    top = score(fused, per, gap)
    for _ in range(rounds):
        for g in RUN_GAPS:
            got = score(fused, per, g)
            if got["f1"] > top["f1"] + 1e-9:
                gap, top = g, got
        for plane in PLANES:
            for s in (SUBTYPES.index(t) for t in tuned):
                for v in CLASSIFIER_THRESHOLDS:
                    trial = {**per, plane: per[plane][:s] + [v] + per[plane][s + 1:]}
                    got = score(fused, trial, gap)
                    if got["f1"] > top["f1"] + 1e-9:
                        per, top = trial, got
    return {**best, **top, "thresholds": per, "gap": gap, "protocol": protocol}, results


class _Unfused(NamedTuple):
    """One validation scan as the fusion tuning reads it: the networks' unfused probabilities per plane."""
    volume: object
    grid: np.ndarray
    matrix: np.ndarray
    alignment: object
    probs: dict
    truth: object


def _unfused(method, volume, truth):
    scan = PreparedScan(volume)
    grid, m = scan.cascade_grid()
    probs = {p: method.plane_probabilities(plane_slices(grid, p), p, kernel=[1.0], stage1_threshold=0.0)
             for p in PLANES}
    return _Unfused(volume, grid, m, scan.alignment, probs, truth)


def _grid_search(raw, score):
    """Every (stage-1 threshold, kernel, fusion threshold): (best, table, the best's fused probabilities)."""
    results, fused_by = [], {}
    for stage1 in STAGE1_THRESHOLDS:
        for kernel in FUSION_KERNELS:
            fused_by[stage1, tuple(kernel)] = [{p: fuse_columns(stage1_gated(v, stage1), kernel) for p, v in r.probs.items()}
                                               for r in raw]
            for thr in FUSION_THRESHOLDS:
                results.append({"stage1_threshold": stage1, "kernel": kernel, "threshold": thr,
                                **score(fused_by[stage1, tuple(kernel)], thr)})
    best = max(results, key=lambda r: (r["f1"], r["subtype_acc"]))
    return best, results, fused_by[best["stage1_threshold"], tuple(best["kernel"])]


def _counts_3d(boxes, volume, truth):
    """(TP, FP, FN, TP with the right subtype): 3D boxes against the lesions' RAS boxes (paper 000)."""
    pred = [b.to_json() for b in boxes]
    matches, fps, fns = match_boxes(pred, truth, 0.4)
    return len(matches), len(fps), len(fns), sum(pred[a]["subtype"] == truth[b]["subtype"] for a, b, _ in matches)


def _counts_2d(boxes, volume, truth):
    """(TP, FP, FN, TP with the right subtype) of the boxes cut through each input slice: against its
    hematoma boxes (IPH), as ich-evaluate scores PHE-SICH, or against its subtypes (slice, subtype)
    pairs, as ich-evaluate scores CT-ICH."""
    if isinstance(truth, np.ndarray):
        called = np.zeros(truth.shape, bool)
        for k, cut in enumerate(cascade_boxes_2d(volume, boxes)):
            for _, subtype in cut:
                called[k, SUBTYPES.index(subtype)] = True
        tp = int((called & truth).sum())
        return np.array([tp, int((called & ~truth).sum()), int((~called & truth).sum()), tp])
    totals = np.zeros(4, int)
    for cut, slice_truth in zip(cascade_boxes_2d(volume, boxes), truth):
        tp, fp, fn = match_counts_2d([b for b, _ in cut], slice_truth)
        iph = match_counts_2d([b for b, subtype in cut if subtype == "IPH"], slice_truth)[0]
        totals += (tp, fp, fn, iph)
    return totals


# The minimum lesion size stops at 0.1 mL. With 0.5 mL allowed, tuning chose it (validation Dice 0.83
# against 0.76), mostly by emptying the bleed-free scans of specks — but it also drops the small IVH
# and SAH that a reader most needs pointed out.
UNET_SEARCH = {"threshold": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7), "gate_threshold": (0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9),
               "gate_override": (None, 0.8, 0.9, 0.95, 0.98),  # None: the gate alone decides
               "closing_mm": (0.0, 2.0, 4.0), "opening_mm": (0.0, 1.0, 2.0),
               "min_volume_ml": (0.02, 0.05, 0.1),
               "bone_hu": (None, 500.0, 600.0, 700.0, 800.0, 1000.0)}  # None: no bone ceiling


def tune_unet(entry: ModelEntry, scans, search=None, rounds: int = 2):
    """The U-Net's post-processing on labelled volumes [(CTVolume, truth)]: the per-scan score of the
    method's own output on the input grid (scan_score), averaged per dataset (the volume's
    metadata["dataset"]) and then over datasets, so that 30 phantoms weigh as much as 56 PHE scans;
    maximized one parameter at a time over `search` (coordinate ascent, `rounds` passes from the
    catalogue's values). The networks run once per scan. Returns (best, table); the score is
    reported as "dice", each dataset's as "dice <dataset>"."""
    search = search or UNET_SEARCH
    method = UNetSegmenter(entry, load_state(entry), "cpu")
    cases = []
    for volume, truth in scans:
        scan = PreparedScan(volume)
        cases.append((scan, method.probabilities(scan), truth, str(volume.metadata.get("dataset", ""))))
    scores = {}

    def per_dataset(params):
        got = {}
        for scan, maps, truth, dataset in cases:
            got.setdefault(dataset, []).append(scan_score(method.segment(scan, maps, params).lesion_labels > 0, truth))
        return {dataset: float(np.mean(values)) for dataset, values in sorted(got.items())}

    def score(params):
        key = tuple(sorted(params.items()))
        if key not in scores:
            scores[key] = per_dataset(params)
        return float(np.mean(list(scores[key].values())))

    best = {name: method.params.get(name, values[len(values) // 2]) for name, values in search.items()}
    for _ in range(rounds):
        for name, values in search.items():
            best[name] = max(values, key=lambda v: (score({**best, name: v}), v == best[name]))

    def named(by_dataset):
        return {f"dice {d}": v for d, v in by_dataset.items() if d and len(by_dataset) > 1}

    table = [{**dict(key), "dice": score(dict(key)), **named(got)} for key, got in list(scores.items())]
    return {**best, "dice": score(best), **named(scores[tuple(sorted(best.items()))])}, table


def scan_score(pred: np.ndarray, truth) -> float:
    """One scan's score for U-Net tuning (1 when both are empty), by what its truth is:
    - a voxel mask (phantoms, CT-ICH NIfTI): voxel Dice;
    - (mask, labelled slices) (PHE-SICH: the clots in its boxes): voxel Dice over those slices;
    - ICH per slice, a 1-D bool array (CT-ICH JPG: no pixels known): the Dice of the slices holding
      a lesion against the slices with ICH."""
    if isinstance(truth, tuple):
        mask, labelled = truth
        return dice(pred[labelled], mask[labelled] > 0)
    truth = np.asarray(truth)
    if truth.ndim == 1:
        return dice(pred.any(axis=(1, 2)), truth.astype(bool))
    return dice(pred, truth > 0)


__all__ = ["scan_score", "tune_cascade", "tune_unet"]
