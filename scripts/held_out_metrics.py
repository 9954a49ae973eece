"""Attach ich-evaluate reports of a held-out fold to a catalogue entry (its metrics' "held_out"), so
that the entry and the model card say how the model does on patients it never saw.

    python scripts/held_out_metrics.py MODEL_ID "fold 4 of ctich-jpg and phe (never trained on)" \
        ctich-jpg::runs/eval-…/report.json phe::runs/eval-…/report.json [--models DIR] [--weights TEXT]

--weights names the weights the reports were measured on when they are not the entry's own (an entry
retrained on all folds keeps the figures of its fold-0-3 weights; register_run.py --keep-tuning writes
that note, and --weights keep carries it over).
"""
import argparse
import json
from pathlib import Path

from ICHLocalizationLib.models import Catalogue, models_dir
from ICHTrainingLib.cli import update_entry


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_id")
    ap.add_argument("data", help="what the reports were measured on, in words")
    ap.add_argument("reports", nargs="+", help="DATASET::report.json")
    ap.add_argument("--models", help="catalogue folder (default: the bundled one)")
    ap.add_argument("--weights", help="the weights measured, if not the entry's own; 'keep': the entry's current note")
    args = ap.parse_args(argv)
    held_out = {"data": args.data}
    for arg in args.reports:
        name, _, path = arg.partition("::")
        held_out[name] = json.loads(Path(path).read_text())["metrics"]
    if args.weights == "keep":
        entry = next((e for e in Catalogue.load(args.models).entries if e.id == args.model_id), None)
        if entry is None or "weights" not in entry.metrics.get("held_out", {}):
            raise SystemExit(f"{args.model_id}: no held-out weights note to keep")
        held_out["weights"] = entry.metrics["held_out"]["weights"]
    elif args.weights:
        held_out["weights"] = args.weights
    update_entry(models_dir(args.models), args.model_id, {}, {"held_out": held_out})
    print(f"{args.model_id}: held-out metrics of {', '.join(k for k in held_out if k != 'data')} attached")


if __name__ == "__main__":
    main()
