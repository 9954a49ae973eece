"""The papers' evaluation protocols, and `ich-evaluate` over a dataset with patient-bootstrap CIs.

- paper 001 (MIL): per axial slice, a lesion's 2D box is a TP if a detected point lies in it, else an
  FN; a point in no box is an FP; counts summed over all slices (negatives included) → Se, PPV, Dice.
- paper 000 (cascade): a predicted 3D box is a TP at IoU ≥ 0.4 with an annotated box (one-to-one);
  Se/PPV overall and per subtype, subtype accuracy of matches; EDH reported separately.
- paper 003 (U-Net): Dice averaged over slices with a ground-truth bleed; per-scan Dice; volume error.
- paper 004: slice-level AUC, recall, F1 at 0.5.
"""
import json
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
from scipy import ndimage

from ICHLocalizationLib.findings import SUBTYPES


# --- protocols -----------------------------------------------------------------------------------
def lesion_boxes_2d(mask2d: np.ndarray):
    """Bounding boxes (row0, row1, col0, col1, inclusive) of the connected bleeds of one slice."""
    lab, n = ndimage.label(mask2d)
    return [(s[0].start, s[0].stop - 1, s[1].start, s[1].stop - 1) for s in ndimage.find_objects(lab)] if n else []


def label_boxes_2d(labels2d: np.ndarray):
    """One box per label value present (a lesion id or, on phantoms, a subtype: the phantom never
    repeats a subtype in a scan), as the paper 001 protocol boxes each lesion on each slice."""
    boxes = []
    for v in np.unique(labels2d):
        if v == 0:
            continue
        rr, cc = np.nonzero(labels2d == v)
        boxes.append((rr.min(), rr.max(), cc.min(), cc.max()))
    return boxes


def point_in_box_counts(points, boxes, margin=1.0):
    """Paper 001 on one slice: points (N, 2) as (row, col), boxes as from lesion_boxes_2d → (tp, fp, fn)."""
    hit = [False] * len(boxes)
    fp = 0
    for r, c in np.asarray(points, float).reshape(-1, 2):
        inside = [b for b, (r0, r1, c0, c1) in enumerate(boxes)
                  if r0 - margin <= r <= r1 + margin and c0 - margin <= c <= c1 + margin]
        if inside:
            for b in inside:
                hit[b] = True
        else:
            fp += 1
    return sum(hit), fp, len(boxes) - sum(hit)


def box_iou(a, b):
    """IoU of two axis-aligned boxes given as {'min': [..3], 'max': [..3]}."""
    lo = np.maximum(a["min"], b["min"])
    hi = np.minimum(a["max"], b["max"])
    inter = float(np.prod(np.clip(np.asarray(hi) - lo, 0, None)))
    va = float(np.prod(np.subtract(a["max"], a["min"])))
    vb = float(np.prod(np.subtract(b["max"], b["min"])))
    return inter / max(va + vb - inter, 1e-9)


def match_boxes(pred: List[dict], truth: List[dict], threshold=0.4):
    """Greedy one-to-one matching by IoU (best pairs first) → (matches [(p, t, iou)], unmatched preds, unmatched truths)."""
    pairs = sorted(((box_iou(p["bbox_ras"], t["bbox_ras"]), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth)),
                   reverse=True)
    used_p, used_t, matches = set(), set(), []
    for v, i, j in pairs:
        if v < threshold:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        matches.append((i, j, v))
    return matches, [i for i in range(len(pred)) if i not in used_p], [j for j in range(len(truth)) if j not in used_t]


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    s = pred.sum() + truth.sum()
    return float(2 * (pred & truth).sum() / s) if s else 1.0


def slice_dice_mean(pred: np.ndarray, truth: np.ndarray) -> List[float]:
    """Paper 003: Dice of each slice that has a ground-truth bleed."""
    return [dice(pred[k], truth[k]) for k in range(truth.shape[0]) if truth[k].any()]


def slice_classification(labels, scores, threshold=0.5):
    from .train import slice_auc

    y = np.asarray(labels, bool)
    p = np.asarray(scores, float) >= threshold
    tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
    recall = tp / max(1, tp + fn)
    precision = tp / max(1, tp + fp)
    return {"auc": slice_auc(y, scores), "recall": recall, "precision": precision,
            "f1": 2 * precision * recall / max(1e-9, precision + recall), "n": int(len(y))}


def bootstrap_ci(per_patient: List[dict], stat, n=1000, seed=0):
    """95 % CI of stat(list of per-patient dicts) by resampling patients with replacement."""
    if n <= 0 or len(per_patient) < 2:
        return None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        sample = [per_patient[i] for i in rng.integers(0, len(per_patient), len(per_patient))]
        v = stat(sample)
        if v is not None and np.isfinite(v):
            vals.append(v)
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals else None


# --- reports -----------------------------------------------------------------------------------
@dataclass
class Report:
    dataset: str
    rows: Dict[str, Dict[str, object]] = field(default_factory=dict)  # metric group → values
    notes: List[str] = field(default_factory=list)

    def add(self, group, name, value, ci=None, paper=None):
        self.rows.setdefault(group, {})[name] = {"value": value, "ci95": ci, "paper": paper}

    def to_json(self):
        return {"dataset": self.dataset, "metrics": self.rows, "notes": self.notes}

    def markdown(self):
        lines = [f"### {self.dataset}", "", "| method / protocol | metric | ours | 95 % CI | paper |", "|---|---|---|---|---|"]
        for group, metrics in self.rows.items():
            for name, m in metrics.items():
                v = m["value"]
                ci = m["ci95"]
                lines.append(f"| {group} | {name} | {_fmt(v)} | {'' if not ci else f'{_fmt(ci[0])}–{_fmt(ci[1])}'} | "
                             f"{'' if m['paper'] is None else m['paper']} |")
        lines += [f"\n{n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


PAPER = {"mil_dice": "58.08 (pool, CQ500)", "mil_se": "54.72", "mil_ppv": "61.88",
         "cascade_se": "57.3 (CQ500)", "cascade_ppv": "77.1", "unet_dice": "0.31 (003) / 0.60 (002)"}


# --- datasets ------------------------------------------------------------------------------------
def evaluate_dataset(spec: str, methods, models=None, device="cpu", bootstrap=1000) -> Report:
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    from ICHLocalizationLib.pipeline import Pipeline

    pipeline = Pipeline(methods, models=models, device=device)
    if kind == "phantom":
        from .cli import parse_seeds

        return evaluate_phantoms(pipeline, parse_seeds(arg), methods, bootstrap)
    if kind in ("ctich-slices", "kaggle"):
        return evaluate_real(kind, arg, pipeline, methods, bootstrap)
    raise ValueError(f"unknown dataset {kind!r} for ich-evaluate; use phantom:SEEDS, ctich-slices:DIR or kaggle:DIR")


def evaluate_phantoms(pipeline, seeds, methods, bootstrap=1000) -> Report:
    from ICHLocalizationLib.phantom import generate

    per = []
    for seed in seeds:
        ph = generate(seed)
        truth = ph.truth()
        res = pipeline.run(ph.volume)
        vol = ph.volume
        rec = {"seed": seed}
        if "mil" in methods:
            tp = fp = fn = 0
            by_slice = {}
            for p in res.points:
                i, j, _ = vol.ras_to_ijk_points(p.ras)[0]
                by_slice.setdefault(p.slice, []).append((j, i))
            for k in range(vol.shape[0]):
                a, b, c = point_in_box_counts(by_slice.get(k, []), label_boxes_2d(ph.mask[k]))
                tp, fp, fn = tp + a, fp + b, fn + c
            rec["mil"] = (tp, fp, fn)
        if "cascade" in methods:
            pred = [b.to_json() for b in res.boxes]
            matches, fps, fns = match_boxes(pred, truth["lesions"])
            right = sum(pred[i]["subtype"] == truth["lesions"][j]["subtype"] for i, j, _ in matches)
            rec["cascade"] = (len(matches), len(fps), len(fns), right)
            rec["cascade_sub"] = {s: (sum(truth["lesions"][j]["subtype"] == s for _, j, _ in matches),
                                      sum(truth["lesions"][j]["subtype"] == s for j in fns)) for s in SUBTYPES}
        if "unet" in methods:
            pred = res.lesion_labels > 0 if res.lesion_labels is not None else np.zeros(vol.shape, bool)
            t = ph.mask > 0
            rec["unet_dice"] = dice(pred, t)
            rec["unet_slice_dice"] = slice_dice_mean(pred, t)
            errs = []
            for les in truth["lesions"]:
                near = [s for s in res.segments if all(les["bbox_ras"]["min"][a] - 2 <= s.centroid_ras[a] <= les["bbox_ras"]["max"][a] + 2 for a in range(3))]
                errs.append(abs(sum(s.volume_ml for s in near) - les["volume_ml"]) / les["volume_ml"])
            rec["unet_volerr"] = errs
        for m, scores in res.slice_scores.items():
            rec.setdefault("slices", {})[m] = (list(scores), list((ph.mask > 0).any(axis=(1, 2))))
        per.append(rec)
    return phantom_report(f"phantom scans {seeds[0]}–{seeds[-1]} ({len(seeds)})", per, bootstrap)


def _add_mil_rows(rep, per, group, bootstrap):
    """Se, PPV, Dice of paper 001's protocol from per-patient (tp, fp, fn), with patient-bootstrap CIs."""
    def stat(name):
        def f(sample):
            tp, fp, fn = (sum(r["mil"][i] for r in sample) for i in range(3))
            return {"dice": 2 * tp / max(1, 2 * tp + fp + fn), "se": tp / max(1, tp + fn), "ppv": tp / max(1, tp + fp)}[name]
        return f
    for name, key in (("dice", "mil_dice"), ("se", "mil_se"), ("ppv", "mil_ppv")):
        rep.add(group, name, stat(name)(per), bootstrap_ci(per, stat(name), bootstrap), PAPER[key])


def phantom_report(name, per, bootstrap):
    rep = Report(name)
    if per and "mil" in per[0]:
        _add_mil_rows(rep, per, "MIL point-in-box (001)", bootstrap)
    if per and "cascade" in per[0]:
        def casc(stat):
            def f(sample):
                tp, fp, fn, right = (sum(r["cascade"][i] for r in sample) for i in range(4))
                return {"se": tp / max(1, tp + fn), "ppv": tp / max(1, tp + fp), "subtype_acc": right / max(1, tp)}[stat]
            return f
        for stat, key in (("se", "cascade_se"), ("ppv", "cascade_ppv"), ("subtype_acc", None)):
            rep.add("cascade IoU≥0.4 (000)", stat, casc(stat)(per), bootstrap_ci(per, casc(stat), bootstrap), PAPER.get(key))
        for s in SUBTYPES:
            tp = sum(r["cascade_sub"][s][0] for r in per)
            fn = sum(r["cascade_sub"][s][1] for r in per)
            if tp + fn:
                rep.add("cascade IoU≥0.4 (000)", f"Se {s}" + (" (excluded by the paper)" if s == "EDH" else ""), tp / (tp + fn))
    if per and "unet_dice" in per[0]:
        sd = lambda sample: float(np.mean([d for r in sample for d in r["unet_slice_dice"]] or [np.nan]))  # noqa: E731
        scan = lambda sample: float(np.mean([r["unet_dice"] for r in sample]))  # noqa: E731
        verr = lambda sample: float(np.median([e for r in sample for e in r["unet_volerr"]] or [np.nan]))  # noqa: E731
        rep.add("U-Net (003)", "Dice over bleed slices", sd(per), bootstrap_ci(per, sd, bootstrap), PAPER["unet_dice"])
        rep.add("U-Net (003)", "Dice per scan", scan(per), bootstrap_ci(per, scan, bootstrap))
        rep.add("U-Net (003)", "median |volume error|", verr(per), bootstrap_ci(per, verr, bootstrap))
    for m in (per[0].get("slices", {}) if per else {}):
        ys = [y for r in per for y in r["slices"][m][1]]
        ss = [s for r in per for s in r["slices"][m][0]]
        for k, v in slice_classification(ys, ss).items():
            if k != "n":
                rep.add(f"slice level ({m})", k, v)
    return rep


def write_report(rep: Report, path):
    from pathlib import Path

    Path(path).write_text(json.dumps(rep.to_json(), indent=1))


def evaluate_real(kind, folder, pipeline, methods, bootstrap=1000) -> Report:
    """ctich-slices: the 26 CT-ICH slices (MIL point-in-box, U-Net Dice, slice recall);
    kaggle: 100 windowed PNG slices (slice-level AUC per method)."""
    from ICHLocalizationLib.io import read_volume

    if kind == "ctich-slices":
        from .datasets.ctich import read_mask_dicom, read_slice_subset

        per = []
        for item in read_slice_subset(folder):
            vol = read_volume(item["image"], spacing=(0.45, 0.45, 5.0))
            res = pipeline.run(vol)
            mask = read_mask_dicom(item["mask"])
            pts = [vol.ras_to_ijk_points(p.ras)[0] for p in res.points]
            rec = {"patient": item["patient"], "mil": point_in_box_counts([(j, i) for i, j, _ in pts], lesion_boxes_2d(mask))}
            pred = (res.lesion_labels[0] > 0) if res.lesion_labels is not None else np.zeros_like(mask)
            rec["unet_dice"] = dice(pred, mask)
            rec["scores"] = {m: max(v) for m, v in res.slice_scores.items() if v}
            per.append(rec)
        rep = Report(f"PhysioNet CT-ICH, {len(per)} bleed slices")
        if "mil" in methods:
            _add_mil_rows(rep, per, "MIL point-in-lesion (001 protocol)", bootstrap)
        if "unet" in methods:
            ud = lambda sample: float(np.mean([r["unet_dice"] for r in sample]))  # noqa: E731
            rep.add("U-Net (003)", "Dice", ud(per), bootstrap_ci(per, ud, bootstrap), PAPER["unet_dice"])
        for m in methods:
            rec_m = [r["scores"].get(m) for r in per if m in r["scores"]]
            if rec_m:
                rep.add(f"slice level ({m})", "recall at 0.5 (all slices bleed)", float(np.mean(np.array(rec_m) >= 0.5)))
        return rep
    from .datasets.kaggle import read_labels

    labels, scores = [], {}
    for png, label in read_labels(folder):
        res = pipeline.run(read_volume(png, spacing=(0.5, 0.5, 5.0)))
        labels.append(label)
        for m, v in res.slice_scores.items():
            scores.setdefault(m, []).append(max(v) if v else 0.0)
    rep = Report(f"Kaggle head CT, {len(labels)} windowed slices")
    for m, s in scores.items():
        for k, v in slice_classification(labels, s).items():
            if k != "n":
                rep.add(f"slice level ({m})", k, v, paper="AUC —" if k == "auc" else None)
    return rep
