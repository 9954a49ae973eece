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

from .metrics import (bootstrap_ci, dice, match_boxes, match_counts_2d, point_in_box_counts, rates, roc_auc,
                      slice_dices)


# --- protocols -----------------------------------------------------------------------------------
def connected_boxes_2d(mask2d: np.ndarray):
    """Bounding boxes (row0, row1, col0, col1, inclusive) of the connected bleeds of one slice."""
    lab, n = ndimage.label(mask2d)
    return [(s[0].start, s[0].stop - 1, s[1].start, s[1].stop - 1) for s in ndimage.find_objects(lab)] if n else []


def boxes_per_label_2d(labels2d: np.ndarray):
    """One box per label value present (a lesion id or, on phantoms, a subtype: the phantom never
    repeats a subtype in a scan), as the paper 001 protocol boxes each lesion on each slice."""
    boxes = []
    for v in np.unique(labels2d):
        if v == 0:
            continue
        rr, cc = np.nonzero(labels2d == v)
        boxes.append((rr.min(), rr.max(), cc.min(), cc.max()))
    return boxes


def slice_classification(labels, scores, threshold=0.5):
    y = np.asarray(labels, bool)
    p = np.asarray(scores, float) >= threshold
    tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
    recall = tp / max(1, tp + fn)
    precision = tp / max(1, tp + fp)
    return {"auc": roc_auc(y, scores), "recall": recall, "precision": precision,
            "f1": 2 * precision * recall / max(1e-9, precision + recall), "n": int(len(y))}


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
def evaluate_dataset(spec: str, methods, models=None, device="cpu", bootstrap=1000, per_scan=None) -> Report:
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    from ICHLocalizationLib.pipeline import Pipeline

    pipeline = Pipeline(methods, models=models, device=device)
    if kind == "phantom":
        from .datasets.phantom import parse_seeds

        return evaluate_phantoms(pipeline, parse_seeds(arg), methods, bootstrap)
    if kind in ("ctich-slices", "kaggle"):
        return evaluate_real(kind, arg, pipeline, methods, bootstrap)
    if kind in ("ctich-jpg", "phe"):
        return evaluate_real_scans(kind, arg, pipeline, methods, bootstrap, per_scan)
    raise ValueError(f"unknown dataset {kind!r} for ich-evaluate; use phantom:SEEDS, ctich-jpg:folds=0-4, "
                     "phe:folds=0-4, ctich-slices:DIR or kaggle:DIR")


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
                a, b, c = point_in_box_counts(by_slice.get(k, []), boxes_per_label_2d(ph.mask[k]))
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
            rec["unet_slice_dice"] = slice_dices(pred, t)
            errs = []
            for les in truth["lesions"]:
                near = [s for s in res.segments if all(les["bbox_ras"]["min"][a] - 2 <= s.centroid_ras[a] <= les["bbox_ras"]["max"][a] + 2 for a in range(3))]
                errs.append(abs(sum(s.volume_ml for s in near) - les["volume_ml"]) / les["volume_ml"])
            rec["unet_volerr"] = errs
        for m, scores in res.slice_scores.items():
            rec.setdefault("slices", {})[m] = (list(scores), list((ph.mask > 0).any(axis=(1, 2))))
        per.append(rec)
    return phantom_report(f"phantom scans {seeds[0]}–{seeds[-1]} ({len(seeds)})", per, bootstrap)


def _add_rate_rows(rep, records, group, counts, bootstrap, names=("dice", "se", "ppv"), papers=(None, None, None)):
    """Dice, Se and PPV (rows named by `names`) from per-patient (tp, fp, fn) = counts(record), summed
    over the patients, with patient-bootstrap CIs."""
    def stat(key):
        return lambda sample: rates(*(sum(counts(r)[i] for r in sample) for i in range(3)))[key]
    for key, name, paper in zip(("dice", "se", "ppv"), names, papers):
        rep.add(group, name, stat(key)(records), bootstrap_ci(records, stat(key), bootstrap), paper)


def _add_mil_rows(rep, per, group, bootstrap):
    """Se, PPV, Dice of paper 001's protocol from per-patient (tp, fp, fn), with patient-bootstrap CIs."""
    _add_rate_rows(rep, per, group, lambda r: r["mil"], bootstrap,
                   papers=(PAPER["mil_dice"], PAPER["mil_se"], PAPER["mil_ppv"]))


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
            rec = {"patient": item["patient"], "mil": point_in_box_counts([(j, i) for i, j, _ in pts], connected_boxes_2d(mask))}
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


# --- real scans (ctich-jpg, phe): out of fold ------------------------------------------------------
def _ijk_extent(vol, box):
    """(lowest, highest) IJK corner of a cascade box on the input grid, and the input slices it spans."""
    ijk = vol.ras_to_ijk_points(box.corners_ras)
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    return lo, hi, range(max(0, int(np.ceil(lo[2] - 0.5))), min(vol.shape[0] - 1, int(np.floor(hi[2] + 0.5))) + 1)


def cascade_boxes_2d(vol, boxes):
    """Per input slice of vol: the cascade's 3D boxes (BoxFindings) cut through it, each as
    ((row0, col0, row1, col1), subtype)."""
    out = [[] for _ in range(vol.shape[0])]
    for box in boxes:
        lo, hi, ks = _ijk_extent(vol, box)
        for k in ks:
            out[k].append(((int(round(lo[1])), int(round(lo[0])), int(round(hi[1])), int(round(hi[0]))), box.subtype))
    return out


def predicted_boxes_2d(res):
    """Per input slice: the cascade's 3D boxes cut through it and the U-Net's lesions' 2D boxes,
    each as (row0, col0, row1, col1)."""
    out = [{"cascade": [b for b, _ in cut], "unet": []} for cut in cascade_boxes_2d(res.volume, res.boxes)]
    if res.lesion_labels is not None:
        for k, slice_boxes in enumerate(out):
            slice_boxes["unet"] = [(r0, c0, r1, c1) for r0, r1, c0, c1 in connected_boxes_2d(res.lesion_labels[k] > 0)]
    return out


def slice_subtype_predictions(res):
    """(k, 5) bool per method: the subtypes each input slice is called (cascade boxes, U-Net segments)."""
    vol = res.volume
    out = {"cascade": np.zeros((vol.shape[0], len(SUBTYPES)), bool), "unet": np.zeros((vol.shape[0], len(SUBTYPES)), bool)}
    for b in res.boxes:
        if b.subtype in SUBTYPES:
            out["cascade"][list(_ijk_extent(vol, b)[2]), SUBTYPES.index(b.subtype)] = True
    if res.lesion_labels is not None:
        for s in res.segments:
            if s.subtype in SUBTYPES:
                out["unet"][:, SUBTYPES.index(s.subtype)] |= (res.lesion_labels == s.label).any(axis=(1, 2))
    return out


def real_scan_record(kind, patient, fold, vol, truth, res, methods):
    """What the report needs of one real scan, JSON-ready (also written to scans.json)."""
    subtypes = vol.metadata["slice_subtypes"]
    rec = {"patient": patient, "fold": int(fold), "labels": subtypes.any(axis=1).tolist(),
           "slice_subtypes": subtypes.tolist(), "scores": {m: [float(v) for v in s] for m, s in res.slice_scores.items()}}
    if kind == "phe":
        by_slice = {}
        for p in res.points:
            i, j, _ = vol.ras_to_ijk_points(p.ras)[0]
            by_slice.setdefault(p.slice, []).append((j, i))
        counts = {m: [0, 0, 0] for m in ("mil", "cascade", "unet", "unet centre")}
        for k, (boxes, predicted) in enumerate(zip(truth, predicted_boxes_2d(res))):
            as_rows = [(r0, r1, c0, c1) for r0, c0, r1, c1 in boxes]
            for n, v in enumerate(point_in_box_counts(by_slice.get(k, []), as_rows)):
                counts["mil"][n] += v
            for m, pred in predicted.items():
                for n, v in enumerate(match_counts_2d(pred, boxes)):
                    counts[m][n] += v
            centres = [((r0 + r1) / 2, (c0 + c1) / 2) for r0, c0, r1, c1 in predicted["unet"]]
            for n, v in enumerate(point_in_box_counts(centres, as_rows)):
                counts["unet centre"][n] += v
        rec["counts"] = {m: c for m, c in counts.items() if m.split()[0] in methods}
    else:
        rec["subtype_calls"] = {m: p.tolist() for m, p in slice_subtype_predictions(res).items() if m in methods}
    return rec


def evaluate_real_scans(kind, arg, pipeline, methods, bootstrap=1000, per_scan=None) -> Report:
    """Slice and scan AUC (any ICH), per-subtype slice Se/Sp (CT-ICH), MIL point-in-box and 2D box F1 at
    IoU ≥ 0.4 (PHE), each with patient-bootstrap 95 % CIs. `per_scan` (a list) receives each record."""
    from .datasets.real import real_scans

    records = []
    for patient, fold, vol, truth in real_scans(kind, arg):
        records.append(real_scan_record(kind, patient, fold, vol, truth, pipeline.run(vol), methods))
    if per_scan is not None:
        per_scan.extend(records)
    return real_report(kind, arg, records, methods, bootstrap)


def real_report(kind, arg, records, methods, bootstrap=1000) -> Report:
    rep = Report(f"{kind} {arg or 'folds=0-4'}: {len(records)} scans, {sum(len(r['labels']) for r in records)} slices")
    for m in methods:
        if not records or m not in records[0]["scores"]:
            continue
        slice_auc_ = lambda s, m=m: roc_auc([y for r in s for y in r["labels"]], [v for r in s for v in r["scores"][m]])  # noqa: E731
        scan_auc = lambda s, m=m: roc_auc([any(r["labels"]) for r in s], [max(r["scores"][m] or [0.0]) for r in s])  # noqa: E731
        rep.add(f"{m}", "slice AUC (any ICH)", slice_auc_(records), bootstrap_ci(records, slice_auc_, bootstrap))
        rep.add(f"{m}", "scan AUC (any ICH)", scan_auc(records), bootstrap_ci(records, scan_auc, bootstrap))
    if kind == "phe":
        for m in ("mil", "cascade", "unet", "unet centre"):
            if records and m in records[0].get("counts", {}):
                _add_count_rows(rep, records, m, bootstrap)
    else:
        for m in ("cascade", "unet"):
            if records and m in records[0].get("subtype_calls", {}):
                _add_subtype_rows(rep, records, m)
    return rep


def _add_count_rows(rep, records, m, bootstrap):
    group = {"mil": "MIL point-in-box (001 protocol)", "unet centre": "U-Net lesion centre in box (001 protocol)"}.get(
        m, f"{m} 2D boxes, IoU ≥ 0.4 per slice")
    _add_rate_rows(rep, records, group, lambda r: r["counts"][m], bootstrap, names=("Dice/F1", "Se", "PPV"))


def _add_subtype_rows(rep, records, m):
    truth = np.array([row for r in records for row in r["slice_subtypes"]], bool)
    calls = np.array([row for r in records for row in r["subtype_calls"][m]], bool)
    for n, s in enumerate(SUBTYPES):
        pos = truth[:, n]
        if pos.any():
            se = float((calls[pos, n]).mean())
            sp = float((~calls[~pos, n]).mean())
            rep.add(f"{m} subtype per slice", f"{s} Se / Sp ({int(pos.sum())} slices)", f"{se:.2f} / {sp:.2f}")
