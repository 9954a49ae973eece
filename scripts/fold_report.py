"""Score `ich-evaluate --out` runs of a real dataset on some of its folds, from their scans.json:

    python scripts/fold_report.py phe 4 runs/eval/scans.json [--methods mil]
    python scripts/fold_report.py ctich-jpg 0-4 runs/oof-0/scans.json … runs/oof-4/scans.json --methods mil \
        [--out runs/oof-ctich]    # report.md and report.json, as ich-evaluate --out writes them

One file: an earlier model's figures on the fold later models held out, without running it again.
Several: the out-of-fold runs of one recipe (each evaluated on the fold its training left out),
pooled into one report over all their patients, with patient-bootstrap CIs."""
import argparse
import json
from pathlib import Path

from ICHTrainingLib.datasets.folds import parse_folds
from ICHTrainingLib.evaluate import real_report


def pooled_records(paths, folds):
    """The per-scan records of the given folds from every file; a patient found twice is refused."""
    records, seen = [], {}
    for path in paths:
        for r in json.load(open(path)):
            if r["fold"] not in folds:
                continue
            if r["patient"] in seen:
                raise SystemExit(f"patient {r['patient']} is in {seen[r['patient']]} and {path}: pool runs of different folds")
            seen[r["patient"]] = path
            records.append(r)
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fold_report")
    ap.add_argument("kind", choices=("ctich-jpg", "phe"))
    ap.add_argument("folds", help="e.g. 4 or 0-4")
    ap.add_argument("scans_json", nargs="+")
    ap.add_argument("--methods", default="cascade,mil,unet")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", type=Path, help="also write report.md and report.json here")
    args = ap.parse_args(argv)
    records = pooled_records(args.scans_json, set(parse_folds(args.folds)))
    methods = [m for m in args.methods.split(",") if m]
    report = real_report(args.kind, f"folds={args.folds}", records, methods, args.bootstrap)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(report.markdown())
        (args.out / "report.json").write_text(json.dumps(report.to_json(), indent=1))
    print(report.markdown())


if __name__ == "__main__":
    main()
