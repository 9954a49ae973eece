"""Re-score an `ich-evaluate --out` run of a real dataset on some of its folds, from its scans.json:

    python scripts/fold_report.py runs/eval/scans.json phe 4 [--methods mil]

How the figures of the bundled models, trained on folds 0-3, are compared with earlier models on the
same held-out fold without running those again."""
import argparse
import json

from ICHTrainingLib.datasets.folds import parse_folds
from ICHTrainingLib.evaluate import real_report


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fold_report")
    ap.add_argument("scans_json")
    ap.add_argument("kind", choices=("ctich-jpg", "phe"))
    ap.add_argument("folds", help="e.g. 4 or 0-3")
    ap.add_argument("--methods", default="cascade,mil,unet")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)
    folds = set(parse_folds(args.folds))
    records = [r for r in json.load(open(args.scans_json)) if r["fold"] in folds]
    methods = [m for m in args.methods.split(",") if m]
    print(real_report(args.kind, f"folds={args.folds}", records, methods, args.bootstrap).markdown())


if __name__ == "__main__":
    main()
