"""`ich-train`, `ich-tune`, `ich-evaluate`: train every model, tune the MIL detector, score the papers' protocols."""
import argparse
import json
import shlex
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ICHLocalizationLib.models import Catalogue, ModelEntry, ModelError, models_dir
from ICHLocalizationLib.volume import InputError


def _fail(prog, msg, code=2):
    print(f"{prog}: {msg}", file=sys.stderr)
    return code


def load_training_records(spec: str, cache: str, workers: int = 2, twins: bool = False):
    """--data 'phantom:1-120' (more readers: see datasets/)."""
    from .datasets import load_dataset_records

    return load_dataset_records(spec, cache, workers, twins)


def train_parser():
    """`ich-train`'s options (the Slicer module builds its command line from the same parser)."""
    ap = argparse.ArgumentParser(prog="ich-train", description="Train a model of the extension.")
    ap.add_argument("method", choices=("mil", "unet", "cascade"))
    ap.add_argument("--variant", choices=("maxpool", "attention"), default="maxpool", help="MIL pooling")
    ap.add_argument("--data", default="phantom:1-120", help="dataset spec, e.g. phantom:1-120 or ctich:/path")
    ap.add_argument("--cache", default="cache", help="folder for preprocessed slices")
    ap.add_argument("--out", required=True, help="run folder (checkpoints, weights, card)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--constant-lr", action="store_true",
                    help="keep --lr for every epoch (default: ×0.1 after 2/3 and 5/6 of the epochs)")
    ap.add_argument("--folds", type=int, default=1, help="U-Net: patient-level K-fold cross-validation")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0,
                    help="random seed: initial weights, validation patients, batch draws")
    ap.add_argument("--max-batches", type=int, help="cap batches per epoch (quick runs)")
    ap.add_argument("--init", help="start from the weights of an earlier run (its model .pt): fine-tuning")
    ap.add_argument("--balance", choices=("slice", "subtype"), default="slice",
                    help="U-Net bleed patches: around a random bleed slice (paper 003) or each subtype equally often")
    ap.add_argument("--batch-dice", action="store_true",
                    help="U-Net: Dice loss of each class over the whole batch (nnU-Net), not averaged over patches")
    ap.add_argument("--context-mm", type=float, default=0.0, metavar="MM",
                    help="2.5D: the U-Net, the MIL network or the cascade's axial nets also read the slices MM "
                         "above and below (0: one slice); --init with a one-slice model starts from it")
    ap.add_argument("--bleed-free-twins", action="store_true",
                    help="MIL on phantoms: train on pairs, each bleed slice with the same slice of its bleed-free "
                         "twin (the same head rendered without the blood), so that only the blood tells them apart")
    ap.add_argument("--gate-only", action="store_true",
                    help="U-Net: train only its slice gate, from slice labels (real scans too); the U-Net and its "
                         "tuned settings come from --init")
    ap.add_argument("--planes", help="cascade: comma list of planes to train (axial, coronal, sagittal); the other "
                                      "planes' classifiers are kept as --init has them")
    ap.add_argument("--hard-negatives", type=float, default=1.0, metavar="SHARE",
                    help="MIL: of each batch's bleed-free slices the loss counts only this share, those it scores "
                         "highest, weighted to stand for all of them (online hard example mining; default 1: all)")
    ap.add_argument("--input-size", type=int, choices=(128, 256), default=128, metavar="PX",
                    help="MIL: read the 256 px head crop at 128 px (paper 001) or whole, 256 px, where a small "
                         "clot or vein is twice as many pixels wide (four times the compute)")
    ap.add_argument("--register", action="store_true", help="add the trained model to the catalogue in --models")
    ap.add_argument("--models", help="catalogue folder for --register (default: the bundled one)")
    return ap


def train_main(argv=None):
    args = train_parser().parse_args(argv)
    from .loop import TrainConfig, end_distributed
    from .train import run_training

    cfg = TrainConfig(method=args.method, out=args.out, variant=args.variant, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, device=args.device, max_batches=args.max_batches,
                      folds=args.folds, data=[args.data], init=args.init, balance=args.balance, seed=args.seed,
                      batch_dice=args.batch_dice, context_mm=args.context_mm, constant_lr=args.constant_lr,
                      planes=[p.strip() for p in args.planes.split(",") if p.strip()] if args.planes else None,
                      gate_only=args.gate_only, hard_negatives=args.hard_negatives,
                      input_size=args.input_size,
                      command="ich-train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    if args.gate_only and args.method != "unet":
        return _fail("ich-train", "--gate-only is for the U-Net (its slice gate)")
    if args.planes and args.method != "cascade":
        return _fail("ich-train", "--planes is for the cascade (one bank of classifiers per plane)")
    if args.hard_negatives != 1.0 and (args.method != "mil" or not 0 < args.hard_negatives <= 1):
        return _fail("ich-train", "--hard-negatives is a share in (0, 1] of the MIL's bleed-free slices per batch")
    if args.input_size != 128 and args.method != "mil":
        return _fail("ich-train", "--input-size is for the MIL network (the others read fixed grids)")
    if args.bleed_free_twins and args.method != "mil":
        return _fail("ich-train", "--bleed-free-twins is for the MIL network (it learns from slice labels only)")
    try:
        records = load_training_records(args.data, args.cache, args.workers, args.bleed_free_twins)
        entry = run_training(records, cfg)
        if entry is None:  # a torchrun process other than rank 0: rank 0 writes and reports
            return 0
        if args.register:
            register(models_dir(args.models), entry, Path(args.out))
    except (InputError, ModelError, ValueError) as exc:
        return _fail("ich-train", str(exc))
    finally:
        end_distributed()
    print(json.dumps(entry.metrics, indent=1))
    return 0


@contextmanager
def catalogue_lock(directory: Path):
    """Exclusive access to a catalogue folder while it is read, changed and written (trainings and
    tunings run side by side), then the catalogue as it is on disk now."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            import fcntl

            lock = stack.enter_context(open(directory / ".catalogue.lock", "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # Windows: no advisory lock; change one model at a time
            pass
        yield Catalogue.load(directory) if (directory / Catalogue.FILE).exists() else Catalogue([], directory)


def register(directory: Path, entry: ModelEntry, run_dir: Path):
    """Copy a trained model's files next to the catalogue and add (or replace) its entry."""
    import shutil

    with catalogue_lock(directory) as cat:
        for spec in entry.files.values():
            src = Path(run_dir) / spec["file"]
            if src.resolve() != (cat.directory / spec["file"]).resolve():
                shutil.copy2(src, cat.directory / spec["file"])
        entry.directory = cat.directory
        cat.upsert(entry)
        cat.save()
    return entry


def update_entry(directory: Path, model_id: str, params: dict, metrics: dict):
    """Merge tuned parameters and their metrics into one entry, re-reading the catalogue under the lock."""
    with catalogue_lock(directory) as cat:
        entry = next(e for e in cat.entries if e.id == model_id)
        entry.params.update(params)
        entry.metrics.update(metrics)
        cat.save()


def tune_main(argv=None):
    ap = argparse.ArgumentParser(prog="ich-tune", description="Tune post-processing on validation scans: the MIL "
                                 "detector's (h, T, d) and map smoothing by Bayesian optimization, the cascade's fusion, the U-Net's "
                                 "thresholds, morphology and minimum lesion size.")
    ap.add_argument("--method", choices=("mil", "cascade", "unet"), default="mil")
    ap.add_argument("--data", default="phantom:121-150",
                    help="validation scans (never seeds 9001-9010); cascade and U-Net also tune on real folds, "
                         "e.g. phe:folds=0-3,ctich-jpg:folds=0-3")
    ap.add_argument("--cache", default="cache")
    ap.add_argument("--models", help="catalogue folder")
    ap.add_argument("--model", help="model id (default: the method's default)")
    ap.add_argument("--init", type=int, default=10, help="MIL: random initial points")
    ap.add_argument("--iter", type=int, default=150, help="MIL: Bayesian optimization iterations")
    ap.add_argument("--rounds", type=int, default=3, help="cascade: passes of the per-plane, per-subtype threshold ascent")
    ap.add_argument("--save", action="store_true", help="write the tuned values into the catalogue entry")
    args = ap.parse_args(argv)
    try:
        cat = Catalogue.load(args.models)
        entry = cat.get(args.method, args.model)
        if args.method == "mil":
            from .tune_detector import tune

            best = tune(entry, load_training_records(args.data, args.cache), init_points=args.init, n_iter=args.iter)
            update = {"detector": {k: best[k] for k in ("h", "T", "d", "sigma")}}
        elif args.method == "cascade":
            from tqdm import tqdm

            from .datasets import box_protocol, labelled_boxes
            from .tune_postprocessing import tune_cascade

            protocol = box_protocol(args.data)
            best, _ = tune_cascade(entry, tqdm(labelled_boxes(args.data), desc="validation scans", unit="scan"),
                                   protocol=protocol, rounds=args.rounds)
            update = {"fusion": {k: best[k] for k in ("kernel", "threshold", "thresholds", "gap")},
                      "stage1_threshold": best["stage1_threshold"]}
        else:
            from tqdm import tqdm

            from .datasets import labelled_volumes
            from .tune_postprocessing import UNET_SEARCH, tune_unet

            best, _ = tune_unet(entry, tqdm(labelled_volumes(args.data), desc="validation scans", unit="scan"))
            update = {k: best[k] for k in UNET_SEARCH}
        if args.save:
            update_entry(cat.directory, entry.id, update,
                         {"tuning": {"data": args.data, **{k: v for k, v in best.items() if k not in update}}})
    except (InputError, ModelError, ValueError) as exc:
        return _fail("ich-tune", str(exc))
    print(json.dumps(best, indent=1))
    return 0


def evaluate_main(argv=None):
    ap = argparse.ArgumentParser(prog="ich-evaluate", description="Score models with the papers' protocols.")
    ap.add_argument("--data", required=True,
                    help="phantom:9001-9010, ctich-jpg:folds=0-4, phe:folds=0-4, ctich-slices:DIR, kaggle:DIR")
    ap.add_argument("--methods", default="cascade,mil,unet")
    ap.add_argument("--models", help="catalogue folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="write report.md and report.json here")
    ap.add_argument("--bootstrap", type=int, default=1000, help="patient bootstrap resamples for 95 %% CIs")
    args = ap.parse_args(argv)
    from .evaluate import evaluate_dataset

    t0 = time.time()
    try:
        per_scan = []
        report = evaluate_dataset(args.data, [m.strip() for m in args.methods.split(",") if m.strip()],
                                  models=args.models, device=args.device, bootstrap=args.bootstrap, per_scan=per_scan)
    except (InputError, ModelError, ValueError) as exc:
        return _fail("ich-evaluate", str(exc))
    md = report.markdown()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(md)
        (out / "report.json").write_text(json.dumps(report.to_json(), indent=1))
        if per_scan:
            (out / "scans.json").write_text(json.dumps(per_scan))
    print(md)
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":  # `python -m ICHTrainingLib.cli METHOD …` (the Slicer module's background process)
    sys.exit(train_main())
