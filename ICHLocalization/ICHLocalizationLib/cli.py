"""`ich-localize`: files, DICOM folders or folders of scans → one folder of results per scan.

Each scan's results are written into a temporary folder and renamed into place when complete, so
an interrupted batch never leaves half a result; a rerun skips finished scans (resume) and never
overwrites them without --overwrite. A failed scan is recorded in summary.csv and the batch goes
on; the exit status is 1 when any scan failed, 2 when nothing could start.
"""
import argparse
import csv
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .io import ITK_SUFFIXES, PNG_SUFFIXES, case_name, read_volume
from .models import ModelError
from .volume import InputError, optional_spacing

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


def process_case(pipeline, path: Path, out_dir: Path, args, scene=False):
    """Run one scan; write its outputs atomically into out_dir/<case>. Returns (status, detail, results)."""
    from . import headless, mrml
    from .report import overview_png

    case = case_name(path)
    final = out_dir / case
    if final.exists() and (final / "findings.json").exists() and not args.overwrite:
        return "skipped", "already done (use --overwrite to redo)", None
    volume = read_volume(path, spacing=optional_spacing(args.spacing), png_window=_window(args.png_window),
                         series_uid=args.series_uid, allow_gaps=getattr(args, "allow_gaps", False))
    t0 = time.perf_counter()
    results = pipeline.run(volume)
    results.input = str(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{case}.partial-", dir=out_dir))
    try:
        sc = headless.scene()
        ref = mrml.volume_to_node(volume, name=case, scene=sc)
        nodes = mrml.results_to_nodes(results, ref, scene=sc)
        mrml.write_outputs(nodes, tmp)
        overview_png(results, tmp / "overview.png")
        (tmp / "findings.csv").write_text(results.to_csv())
        if scene:
            _save_scene(sc, ref, tmp)
        (tmp / "findings.json").write_text(results.dumps())  # last: its presence marks a finished case
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return "ok", f"{len(results.findings)} finding(s) in {time.perf_counter() - t0:.1f} s", results


def _save_scene(scene, reference_node, folder: Path):
    """scene.mrml next to the outputs, the input volume beside it, all opened by Slicer together."""
    from . import mrml

    mrml.write_node(reference_node, folder / "ct.nrrd")
    for storage in [scene.GetNthNodeByClass(i, "vtkMRMLStorageNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLStorageNode"))]:
        fn = storage.GetFileName()
        if fn:
            storage.SetFileName(os.path.relpath(fn, folder))
    scene.SetRootDirectory(str(folder))
    scene.SetURL(str(folder / "scene.mrml"))
    scene.Commit()


def _check_output_folder(out_dir: Path):
    """Create the folder and prove it writable (os.access says yes to root even on read-only mounts)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to output folder {out_dir} ({exc.strerror or type(exc).__name__}); "
                         "choose another --out")


def _window(text):
    if text is None:
        return (40.0, 80.0)
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--png-window must be LEVEL,WIDTH like 40,80 (got {text!r})")
    return level, width


def main(argv=None):
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
    ap.add_argument("--overwrite", action="store_true", help="redo scans that already have results")
    ap.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")
    args = ap.parse_args(argv)

    out_dir = Path(args.out)
    try:
        _check_output_folder(out_dir)
        from .pipeline import Pipeline

        inputs = expand_inputs(args.inputs)
        pipeline = Pipeline(args.methods, models=args.models, device=args.device,
                            log=lambda m: print(f"ich-localize: {m}", file=sys.stderr))
    except (InputError, ModelError) as exc:
        print(f"ich-localize: {exc}", file=sys.stderr)
        return 2
    if hasattr(signal, "SIGBREAK"):  # Windows: a batch started by Slicer is cancelled with Ctrl+Break
        signal.signal(signal.SIGBREAK, signal.default_int_handler)
    rows, failed = [], 0
    progress = _progress(inputs)
    for n, path in enumerate(progress, 1):
        t0 = time.perf_counter()
        try:
            status, detail, results = process_case(pipeline, path, out_dir, args, scene=args.scene)
            if results is not None:
                from .report import text_summary

                _write(progress, text_summary(results))
        except (InputError, ModelError) as exc:
            status, detail = "failed", str(exc)
        except MemoryError:
            status, detail = "failed", "out of memory: crop or downsample the scan, or run with fewer methods"
        except KeyboardInterrupt:
            print("ich-localize: interrupted; finished scans are kept, rerun to resume", file=sys.stderr)
            _summary(out_dir, rows)
            return 130
        except Exception as exc:  # noqa: BLE001 - one bad scan must not stop a batch
            status, detail = "failed", f"internal error {type(exc).__name__}: {exc} (rerun with --debug)"
            if args.debug:
                traceback.print_exc()
        if status == "skipped":
            _write(progress, f"{path}: {detail}")
        if status == "failed":
            failed += 1
            named = path.name in detail or str(path) in detail or case_name(path) in detail
            print(f"ich-localize: {detail}" if named else f"ich-localize: {path}: {detail}", file=sys.stderr)
        rows.append({"input": str(path), "case": case_name(path), "status": status, "detail": detail,
                     "seconds": round(time.perf_counter() - t0, 2)})
        _write(progress, f"[{n}/{len(inputs)}] {case_name(path)}: {status}")
    _summary(out_dir, rows)
    return 1 if failed else 0


def _progress(inputs):
    if len(inputs) > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(inputs, desc="scans", unit="scan")
    return inputs


def _write(progress, text):
    if hasattr(progress, "write"):
        progress.write(text)
    else:
        print(text)


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
