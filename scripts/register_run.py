"""Register a finished training run in a model catalogue as its method's default, under a weights
file name of its own (so that it sits beside the model it started from).

    python scripts/register_run.py RUN_DIR NEW_WEIGHTS_NAME [--models DIR] [--keep-tuning]

RUN_DIR holds the run's entry.json and weights (ich-train --out); DIR defaults to the bundled
catalogue (ICHLocalization/Resources/Models).

--keep-tuning: the run retrains the recipe of the entry it replaces on more patients (all five folds
after folds 0-3). It keeps that entry's post-processing, tuned out of fold, and its held-out figures,
which are the recipe's out-of-fold estimate: no patient is left to measure the new weights on.
"""
import argparse
import json
import shutil
from pathlib import Path

from ICHLocalizationLib.models import Catalogue, ModelEntry, file_sha256, models_dir
from ICHTrainingLib.cli import register


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("weights_name")
    ap.add_argument("--models", help="catalogue folder (default: the bundled one)")
    ap.add_argument("--keep-tuning", action="store_true",
                    help="keep the post-processing and held-out figures of the entry this run replaces")
    args = ap.parse_args(argv)
    entry = json.loads((args.run_dir / "entry.json").read_text())
    src = args.run_dir / entry["files"]["weights"]["file"]
    dst = args.run_dir / args.weights_name
    if src != dst:
        shutil.copy2(src, dst)
    entry["files"]["weights"] = {"file": dst.name, "sha256": file_sha256(dst)}
    entry["default"] = True
    if args.keep_tuning:
        entry = kept_tuning(entry, Catalogue.load(models_dir(args.models)))
    fields = {k: v for k, v in entry.items() if k in ModelEntry.__dataclass_fields__}
    registered = register(models_dir(args.models), ModelEntry(**fields), args.run_dir)
    print(f"{registered.tag} registered as the default {registered.method} model in {registered.directory}")


def kept_tuning(entry: dict, catalogue: Catalogue) -> dict:
    """`entry` with the tuned params and the tuning and held-out metrics of the catalogue's entry of the
    same id, the held-out figures marked as measured on that entry's weights."""
    old = next((e for e in catalogue.entries if e.id == entry["id"]), None)
    if old is None:
        raise SystemExit(f"--keep-tuning: the catalogue has no {entry['id']} entry to keep the tuning of")
    metrics = dict(entry.get("metrics", {}))
    metrics.update({k: old.metrics[k] for k in ("tuning", "held_out") if k in old.metrics})
    if "held_out" in metrics:
        metrics["held_out"] = dict(metrics["held_out"], weights=(
            f"the same recipe trained on {', '.join(old.training.get('data', []))} "
            f"({old.files['weights']['sha256'][:12]}): these weights add the held-out patients"))
    return dict(entry, params={**entry.get("params", {}), **old.params}, metrics=metrics)


if __name__ == "__main__":
    main()
