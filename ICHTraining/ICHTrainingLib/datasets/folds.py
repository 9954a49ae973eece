"""Patient-level folds of the real datasets, fixed and committed (`folds.json`: patient IDs only).

Five folds per dataset. CT-ICH is stratified by subtype: the patients of the rarest subtype are
dealt out first, each to the fold that has fewest of that subtype, so that every subtype a dataset
holds in more than one patient appears in more than one fold; bleed-free patients then even out
the fold sizes. PHE-SICH (all IPH) is stratified by hematoma extent (slices with a box).
Every real-data figure is reported out of fold: a model never scored on a patient it trained on.
"""
import json
from pathlib import Path

FOLDS_JSON = Path(__file__).with_name("folds.json")
N_FOLDS = 5
SUBTYPE_ORDER_RAREST_FIRST = ("SDH", "IVH", "SAH", "IPH", "EDH")


def stratified_folds(patients, n_folds=N_FOLDS):
    """{patient: fold} from {patient: (set of subtypes, size)}: subtypes dealt rarest first, then size."""
    folds = {}
    count = [0] * n_folds
    by_subtype = {s: [0] * n_folds for s in SUBTYPE_ORDER_RAREST_FIRST}
    for subtype in sorted(by_subtype, key=lambda s: sum(s in p[0] for p in patients.values())):
        for pid in sorted((p for p, (subs, _) in patients.items() if subtype in subs and p not in folds),
                          key=lambda p: (-patients[p][1], p)):
            fold = min(range(n_folds), key=lambda f: (by_subtype[subtype][f], count[f], f))
            _assign(folds, count, by_subtype, patients, pid, fold)
    for pid in sorted((p for p in patients if p not in folds), key=lambda p: (-patients[p][1], p)):
        _assign(folds, count, by_subtype, patients, pid, min(range(n_folds), key=lambda f: (count[f], f)))
    return folds


def _assign(folds, count, by_subtype, patients, pid, fold):
    folds[pid] = fold
    count[fold] += 1
    for s in patients[pid][0]:
        by_subtype[s][fold] += 1


def load_folds(dataset: str):
    """{patient: fold} of 'ctich-jpg' or 'phe'."""
    return json.loads(FOLDS_JSON.read_text())[dataset]


def parse_folds(text: str):
    """'0-3' or '0,2,4' → sorted fold numbers; refuses numbers outside 0..4."""
    out = set()
    for part in (text or "").split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo:
            continue
        out.update(range(int(lo), int(hi or lo) + 1))
    bad = sorted(f for f in out if not 0 <= f < N_FOLDS)
    if bad or not out:
        raise ValueError(f"folds {text!r}: give fold numbers 0..{N_FOLDS - 1}, e.g. folds=0-3")
    return sorted(out)
