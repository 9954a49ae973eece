"""One scan of a batch: read it, run the pipeline, write its result folder atomically, and turn every
expected failure into a recorded status, so that a batch — serial or on Dask workers — goes on.

The folder is written into a temporary folder renamed into place when complete, so an interrupted
batch never leaves half a result; findings.json is written last and marks a finished scan.
"""
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from .io import case_name, read_volume
from .models import ModelError
from .volume import InputError, optional_spacing


def run_scan(pipeline, path: Path, out_dir: Path, args):
    """(row for summary.csv, text summary or None, traceback text or None) of one scan; never raises but
    for KeyboardInterrupt."""
    from .report import text_summary

    t0 = time.perf_counter()
    summary = trace = None
    try:
        status, detail, results = process_case(pipeline, path, out_dir, args, scene=args.scene)
        summary = text_summary(results) if results is not None else None
    except (InputError, ModelError) as exc:
        status, detail = "failed", str(exc)
    except MemoryError:
        status, detail = "failed", "out of memory: crop or downsample the scan, or run with fewer methods"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad scan must not stop a batch
        status, detail = "failed", f"internal error {type(exc).__name__}: {exc} (rerun with --debug)"
        trace = traceback.format_exc()
    row = {"input": str(path), "case": case_name(path), "status": status, "detail": detail,
           "seconds": round(time.perf_counter() - t0, 2)}
    return row, summary, trace


def process_case(pipeline, path: Path, out_dir: Path, args, scene=False):
    """Run one scan; write its outputs atomically into out_dir/<case>. Returns (status, detail, results)."""
    from . import headless, mrml
    from .report import overview_png

    case = case_name(path)
    final = out_dir / case
    if final.exists() and (final / "findings.json").exists() and not args.overwrite:
        return "skipped", "already done (use --overwrite to redo)", None
    volume = read_volume(path, spacing=optional_spacing(args.spacing), png_window=_window(args.png_window),
                         series_uid=args.series_uid, allow_gaps=args.allow_gaps)
    dicom_out = getattr(args, "dicom_out", False)
    if dicom_out and not volume.metadata.get("dicom_files"):
        raise InputError(f"{path}: --dicom-out needs a DICOM series or file as input; run this scan without it")
    t0 = time.perf_counter()
    results = pipeline.run(volume)
    results.input = str(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{case}.partial-", dir=out_dir))
    try:
        sc = headless.scene()
        ref = mrml.volume_to_node(volume, name=case, scene=sc)
        nodes = mrml.results_to_nodes(results, ref, scene=sc)
        mrml.write_outputs(nodes, tmp)
        dicom_error = _write_dicom(results, tmp) if dicom_out else None
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
    detail = f"{len(results.findings)} finding(s) in {time.perf_counter() - t0:.1f} s"
    if dicom_error:
        return "partial", f"{detail}, no DICOM output: {dicom_error}", results
    return "ok", detail, results


def _write_dicom(results, folder: Path):
    """The DICOM SEG and SR into folder; None, or why they could not be written. A failure here costs
    the DICOM objects only: the findings and the other files are kept, and findings.json says so."""
    from .dicom_export import try_write_dicom

    _, reason = try_write_dicom(results, folder)
    if reason:
        results.warnings.append(f"DICOM output failed ({reason}); the other outputs are complete, rerun with "
                                "--dicom-out --overwrite once it is fixed")
    return reason


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


def _window(text):
    """--png-window LEVEL,WIDTH → (level, width); brain 40,80 by default."""
    if text is None:
        return (40.0, 80.0)
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--png-window must be LEVEL,WIDTH like 40,80 (got {text!r})")
    return level, width


