"""Write ICHTrainingLib/datasets/folds.json from the real datasets (run once; the file is committed).

    python scripts/make_folds.py [DATA_ROOT]   # default ../shared/data
"""
import json
import sys
from pathlib import Path

from ICHTrainingLib.datasets import ctich_jpg, phe
from ICHTrainingLib.datasets.ctich import read_diagnosis_csv
from ICHTrainingLib.datasets.folds import FOLDS_JSON, stratified_folds


def ctich_patients(folder: Path):
    diagnosis = read_diagnosis_csv(folder / ctich_jpg.CSV_NAME)
    out = {}
    for pid in ctich_jpg.patients(folder):
        subs = [s for (p, _), s in diagnosis.items() if p == int(pid)]
        out[pid] = (set().union(*subs) if subs else set(), sum(bool(s) for s in subs))
    return out


def phe_patients(folder: Path):
    boxes = phe.read_boxes(folder)
    return {pid: ({"IPH"}, sum(1 for (p, _) in boxes if p == pid)) for pid in phe.patients(folder)}


def main(root):
    root = Path(root)
    folds = {"ctich-jpg": stratified_folds(ctich_patients(root / "ct-ich-jpg")),
             "phe": stratified_folds(phe_patients(root / "phe-sich"))}
    FOLDS_JSON.write_text(json.dumps(folds, indent=1, sort_keys=True) + "\n")
    print(f"{FOLDS_JSON}: " + ", ".join(f"{k} {len(v)} patients" for k, v in folds.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1].parent / "shared" / "data")
