"""Batch throughput: N phantom scans through `ich-localize`, serial and on a local Dask cluster, with
the per-scan cost split that predicts a large batch.

    python benchmarks/batch.py --json OUT [--scans 8] [--workers 2] [--methods cascade,mil,unet]

Each scan is 512×512×32 at 0.45×0.45×5 mm (bench.py's scan32), stored as NIfTI. Both runs are whole
commands, timed from start to exit: process start, model loading and (for Dask) cluster start-up
are in them, and reported apart as "fixed_seconds". Per scan, from the serial run: load (reading the
file), pipeline (the methods: preprocessing, inference, post-processing; findings.json) and writing
(MRML nodes, seg.nrrd, overview, JSON; the rest of summary.csv's seconds). From the Dask run: the
seconds a scan takes in a worker, which give the steady speed-up (start-up amortized) and the
core-seconds per scan behind the prediction for 25,000 scans on a cluster.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_scans(folder: Path, n: int):
    from ICHLocalizationLib.phantom import generate, write_phantom

    for seed in range(n):
        write_phantom(generate(9200 + seed, subtypes=["IPH", "SDH"], pixel_mm=0.45, slice_thickness=5.0, slices=32),
                      folder / f"tmp{seed}", "nifti")
        (folder / f"tmp{seed}" / "ct.nii.gz").rename(folder / f"scan{seed:03d}.nii.gz")


def run_batch(scans: Path, out: Path, methods: str, extra=()):
    """(wall seconds, summary rows) of one ich-localize command."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "ich-localize"), str(scans), "--out", str(out), "--methods", methods,
                           "--device", "cpu", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return wall, list(csv.DictReader(open(out / "summary.csv")))


def per_scan_split(scans: Path, out: Path, rows):
    """Mean seconds per scan: load, pipeline, writing (from the serial run's outputs)."""
    from ICHLocalizationLib.io import read_volume

    load, pipeline, total = [], [], []
    for row in rows:
        t0 = time.perf_counter()
        read_volume(row["input"])
        load.append(time.perf_counter() - t0)
        found = json.loads((out / row["case"] / "findings.json").read_text())
        pipeline.append(sum(r["seconds"] for r in found["runs"]))
        total.append(float(row["seconds"]))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {"load": round(mean(load), 3), "pipeline": round(mean(pipeline), 3),
            "writing": round(mean(total) - mean(load) - mean(pipeline), 3), "total": round(mean(total), 3)}


def predict(core_seconds: float, scans=25_000, machines=(1, 10, 50), cores_per_machine=16):
    """Hours for `scans` on K machines of C cores, one one-thread worker per core: the core-seconds a
    scan takes in a worker here, spread over K·C cores (start-up, a minute, left out; the scans read
    from storage that keeps up, and cores as fast as these)."""
    return {f"{k}x{cores_per_machine}cores": round(scans * core_seconds / (k * cores_per_machine) / 3600, 2)
            for k in machines}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--scans", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", default="cascade,mil,unet")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "scans").mkdir()
        make_scans(tmp / "scans", args.scans)
        serial_s, serial_rows = run_batch(tmp / "scans", tmp / "serial", args.methods)
        dask_s, dask_rows = run_batch(tmp / "scans", tmp / "dask", args.methods, ["--workers", str(args.workers)])
        split = per_scan_split(tmp / "scans", tmp / "serial", serial_rows)
    in_worker = sum(float(r["seconds"]) for r in dask_rows) / len(dask_rows)
    threads = max(1, cores // args.workers)
    steady = split["total"] / (in_worker / args.workers)  # once started: scans per second, Dask over serial
    result = {
        "cores": cores, "scans": args.scans, "workers": args.workers, "threads_per_worker": threads,
        "methods": args.methods,
        "serial": {"seconds": round(serial_s, 1), "scans_per_minute": round(60 * args.scans / serial_s, 2),
                   "per_scan_seconds": split, "fixed_seconds": round(serial_s - args.scans * split["total"], 1)},
        "dask": {"seconds": round(dask_s, 1), "scans_per_minute": round(60 * args.scans / dask_s, 2),
                 "per_scan_seconds_in_worker": round(in_worker, 2),
                 "fixed_seconds": round(dask_s - args.scans * in_worker / args.workers, 1)},
        "speedup": round(serial_s / dask_s, 2), "steady_speedup": round(steady, 2),
        "core_seconds_per_scan": round(in_worker * threads, 2),
        "predicted_hours_25000_scans": predict(in_worker * threads),
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
