"""Register a finished training run in a model catalogue as its method's default, under a weights
file name of its own (so that it sits beside the model it started from).

    python scripts/register_run.py RUN_DIR NEW_WEIGHTS_NAME [--models DIR]

RUN_DIR holds the run's entry.json and weights (ich-train --out); DIR defaults to the bundled
catalogue (ICHLocalization/Resources/Models).
"""
import argparse
import json
import shutil
from pathlib import Path

from ICHLocalizationLib.models import ModelEntry, file_sha256, models_dir
from ICHTrainingLib.cli import register


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("weights_name")
    ap.add_argument("--models", help="catalogue folder (default: the bundled one)")
    args = ap.parse_args(argv)
    entry = json.loads((args.run_dir / "entry.json").read_text())
    src = args.run_dir / entry["files"]["weights"]["file"]
    dst = args.run_dir / args.weights_name
    if src != dst:
        shutil.copy2(src, dst)
    entry["files"]["weights"] = {"file": dst.name, "sha256": file_sha256(dst)}
    entry["default"] = True
    fields = {k: v for k, v in entry.items() if k in ModelEntry.__dataclass_fields__}
    registered = register(models_dir(args.models), ModelEntry(**fields), args.run_dir)
    print(f"{registered.tag} registered as the default {registered.method} model in {registered.directory}")


if __name__ == "__main__":
    main()
