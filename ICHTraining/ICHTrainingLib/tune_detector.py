"""Bayesian optimization of the MIL detector's (h, T, d) on a validation split (paper 001), and of
the map's smoothing sigma (ours, see detector.py; searched in [0, 6] px, 0 = off).

The network's likelihood maps are computed once; each evaluation runs only the detector and
paper 001's per-slice point-in-box protocol, maximizing Dice. Search bounds follow the authors'
code (d ∈ [1, 60] px, rounded; attention h ∈ [0, 0.06], T ∈ [0, 0.03]); for the max-pool variant our
map is a probability (sigmoid of the logit map), so h and T search [0, 1] instead of [0, 1.5]/[0, 2].
"""
import numpy as np

from ICHLocalizationLib.detector import detect_peaks
from ICHLocalizationLib.methods.weakly_supervised import WeaklySupervisedDetector
from ICHLocalizationLib.models import ModelEntry, load_state

from .evaluate import boxes_per_label_2d
from .metrics import point_in_box_counts, rates

BOUNDS = {"maxpool": {"h": (0.0, 1.0), "T": (0.0, 1.0), "d": (1.0, 60.0), "sigma": (0.0, 6.0)},
          "attention": {"h": (0.0, 0.06), "T": (0.0, 0.03), "d": (1.0, 60.0), "sigma": (0.0, 6.0)}}


def validation_maps(entry: ModelEntry, records, device="cpu"):
    """Per slice: (likelihood map on the 256 crop grid, head mask, list of 2D lesion boxes), from the
    method's own maps."""
    method = WeaklySupervisedDetector(entry, load_state(entry), device)
    out = []
    for r in records:
        hu = r["crop_hu"].astype(np.float32)
        _, maps = method.likelihood_maps(hu, r["slice_mm"])
        head = hu > -300
        for k in range(len(maps)):
            out.append((maps[k], head[k], boxes_per_label_2d(r["crop_labels"][k])))
    return out


def detector_dice(slices, h, T, d, sigma=0.0):
    tp = fp = fn = 0
    for lmap, head, boxes in slices:
        rows, cols, _ = detect_peaks(lmap, h, T, d, mask=head, sigma=sigma)
        a, b, c = point_in_box_counts(np.column_stack([rows, cols]), boxes)
        tp, fp, fn = tp + a, fp + b, fn + c
    return {**rates(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn}


def tune(entry: ModelEntry, records, init_points=10, n_iter=150, seed=1):
    from bayes_opt import BayesianOptimization

    variant = entry.input.get("variant", "maxpool")
    slices = validation_maps(entry, records)

    def objective(h, T, d, sigma):
        return detector_dice(slices, h, T, int(round(d)), sigma)["dice"]

    opt = BayesianOptimization(f=objective, pbounds=BOUNDS[variant], random_state=seed, verbose=0)
    start = entry.params.get("detector")
    if start:
        opt.probe({"h": float(start["h"]), "T": float(start["T"]), "d": float(start["d"]),
                   "sigma": float(start.get("sigma", 0.0))}, lazy=True)
    opt.maximize(init_points=init_points, n_iter=n_iter)
    best = opt.max["params"]
    result = {"h": round(float(best["h"]), 5), "T": round(float(best["T"]), 5), "d": int(round(best["d"])),
              "sigma": round(float(best["sigma"]), 2)}
    result.update(detector_dice(slices, result["h"], result["T"], result["d"], result["sigma"]))
    return result
