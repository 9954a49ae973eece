"""`ich-localize`: files, DICOM folders or folders of scans → one folder of results per scan.

Each scan's results are written into a temporary folder and renamed into place when complete, so
an interrupted batch never leaves half a result; a rerun skips finished scans (resume) and never
overwrites them without --overwrite. A failed scan is recorded in summary.csv and the batch goes
on; the exit status is 1 when any scan failed, 2 when nothing could start.
"""
import argparse
import csv
import signal
import sys
import tempfile
from pathlib import Path

from .io import ITK_SUFFIXES, PNG_SUFFIXES
from .models import ModelError
from .runner import run_scan
from .volume import InputError

SCAN_SUFFIXES = ITK_SUFFIXES + PNG_SUFFIXES + (".dcm",)


def expand_inputs(paths):
    """Files stay; a folder holding DICOM files is one scan; a folder of scans expands to them."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")]
        scans = [f for f in files if f.name.lower().endswith(ITK_SUFFIXES + PNG_SUFFIXES)]
        subdirs = [d for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        if scans and len(scans) == len(files):
            out += sorted(scans)
        elif not files and subdirs:
            out += subdirs
        else:
            out.append(p)  # a DICOM folder (or something the reader will explain)
    return out


def _check_output_folder(out_dir: Path):
    """Create the folder and prove it writable (os.access says yes to root even on read-only mounts)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to output folder {out_dir} ({exc.strerror or type(exc).__name__}); "
                         "choose another --out")


def parser():
    ap = argparse.ArgumentParser(prog="ich-localize", description="Find intracranial hemorrhage in head CT.")
    ap.add_argument("inputs", nargs="+", help="NIfTI/NRRD files, DICOM files or folders, PNG slices, folders of scans")
    ap.add_argument("--out", required=True, help="output folder (one subfolder per scan)")
    ap.add_argument("--methods", default="cascade,mil,unet")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--models", help="model catalogue folder (default: the bundled models)")
    ap.add_argument("--spacing", help="SX,SY,SZ in mm for inputs without geometry (PNG, bare DICOM slice)")
    ap.add_argument("--png-window", help="LEVEL,WIDTH the 8-bit PNG was exported with (default 40,80)")
    ap.add_argument("--series-uid", help="SeriesInstanceUID to read from a folder with several series")
    ap.add_argument("--allow-gaps", action="store_true",
                    help="run a DICOM series with slices missing from its middle (filled by interpolation, with a warning); "
                         "by default such a series is refused")
    ap.add_argument("--scene", action="store_true", help="also write scene.mrml that opens in Slicer")
    ap.add_argument("--dicom-out", action="store_true",
                    help="for DICOM inputs, also write segmentation.dcm (DICOM SEG) and report.dcm (TID 1500 SR) for PACS")
    ap.add_argument("--overwrite", action="store_true", help="redo scans that already have results")
    ap.add_argument("--workers", type=int, help="run on a local Dask cluster of this many worker processes")
    ap.add_argument("--scheduler", help="run on an existing Dask cluster: its scheduler address (tcp://host:8786)")
    ap.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")
    return ap


def main(argv=None):
    try:
        return run_batch(parser().parse_args(argv))[0]
    except (InputError, ModelError) as exc:  # nothing could start: one line, exit 2
        _log(exc)
        return 2


def localize(inputs, out, client=None, **options):
    """A batch from Python (scripts, notebooks): ich-localize's options as keywords (methods="mil",
    dicom_out=True, workers=2…), or `client`, a dask.distributed.Client, to run on its cluster.
    The same folders and summary.csv as the command; returns this run's summary rows."""
    args = parser().parse_args([*map(str, inputs), "--out", str(out)])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; the options are ich-localize's (see --help)")
    vars(args).update(options)
    return run_batch(args, client=client)[1]


def _log(message):
    print(f"ich-localize: {message}", file=sys.stderr)


def run_batch(args, client=None):
    """(exit status, summary rows) of a batch: serial, or on Dask when a client, --workers or
    --scheduler is given. Raises InputError/ModelError when nothing can start (output folder, models,
    cluster); a failing scan is recorded and the batch goes on."""
    out_dir = Path(args.out)
    _check_output_folder(out_dir)
    inputs = expand_inputs(args.inputs)
    if client is not None or args.workers is not None or args.scheduler:
        from .scale import dask_batch

        scans = dask_batch(inputs, out_dir, args, workers=args.workers, scheduler=args.scheduler, client=client)
    else:
        from .pipeline import Pipeline

        pipeline = Pipeline(args.methods, models=args.models, device=args.device, log=_log)
        scans = (run_scan(pipeline, path, out_dir, args) for path in inputs)
    if hasattr(signal, "SIGBREAK"):  # Windows: a batch started by Slicer is cancelled with Ctrl+Break
        signal.signal(signal.SIGBREAK, signal.default_int_handler)
    return _report(scans, inputs, out_dir, args)


def _report(scans, inputs, out_dir, args):
    """Print each scan's outcome as it comes, keep summary.csv (in input order), return the exit status."""
    rows, failed, total = [], 0, len(inputs)
    order = {str(path): n for n, path in enumerate(inputs)}
    progress = _progress(total)
    try:
        for n, (row, summary, trace) in enumerate(scans, 1):
            rows.append(row)
            if summary:
                _write(progress, summary)
            if row["status"] == "skipped":
                _write(progress, f"{row['input']}: {row['detail']}")
            if row["status"] in ("failed", "partial"):  # partial: findings written, DICOM output not
                failed += 1
                _print_failure(row, trace if args.debug else None)
            if progress is not None:
                progress.update(1)
            _write(progress, f"[{n}/{total}] {row['case']}: {row['status']}")
    except KeyboardInterrupt:
        print("ich-localize: interrupted; finished scans are kept, rerun to resume", file=sys.stderr)
        _summary(out_dir, sorted(rows, key=lambda r: order[r["input"]]))
        return 130, rows
    rows = sorted(rows, key=lambda r: order[r["input"]])
    _summary(out_dir, rows)
    return (1 if failed else 0), rows


def _print_failure(row, trace=None):
    detail, path = row["detail"], Path(row["input"])
    named = path.name in detail or str(path) in detail or row["case"] in detail
    if trace:
        print(trace, file=sys.stderr)
    print(f"ich-localize: {detail}" if named else f"ich-localize: {path}: {detail}", file=sys.stderr)


def _progress(total):
    """A tqdm bar on a terminal for more than one scan, else None (logs get one line per scan)."""
    if total > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc="scans", unit="scan")
    return None


def _write(progress, text):
    if progress is not None:
        progress.write(text)
    else:
        print(text, flush=True)


def _summary(out_dir: Path, rows):
    """summary.csv: one row per scan of this and earlier runs (latest status wins)."""
    path = out_dir / "summary.csv"
    old = {}
    if path.exists():
        with open(path, newline="") as f:
            old = {r["input"]: r for r in csv.DictReader(f)}
    for r in rows:
        if r["status"] != "skipped" or r["input"] not in old:
            old[r["input"]] = r
    if not old:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["input", "case", "status", "detail", "seconds"])
        w.writeheader()
        w.writerows(old.values())
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
