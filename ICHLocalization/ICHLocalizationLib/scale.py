"""Batch inference on Dask (`ich-localize --workers N` or `--scheduler ADDRESS`): one task per scan,
each worker loading the models once and keeping them for every scan it is given.

Every guarantee of the serial batch holds, because each task runs the same `runner.run_scan`: the
result folder is written through a temporary folder and renamed into place, a finished scan is
skipped, a failed one is recorded and the batch goes on. Results come back as they finish; the
caller writes summary.csv and the exit status as for a serial run. Dask is imported only here.
"""
import os
from pathlib import Path

_PIPELINES = {}  # on each worker: (methods, models, device) → Pipeline, built on the worker's first scan


def worker_pipeline(methods, models, device):
    """The worker's pipeline for these settings, loaded once per worker process."""
    key = (methods, models, device)
    if key not in _PIPELINES:
        from .pipeline import Pipeline

        _PIPELINES[key] = Pipeline(methods, models=models, device=device)
    return _PIPELINES[key]


def scan_task(path: str, out_dir: str, options: dict):
    """What a worker does with one scan: the serial batch's run_scan, on the worker's pipeline."""
    import argparse

    from .runner import run_scan

    args = argparse.Namespace(**options)
    pipeline = worker_pipeline(args.methods, args.models, args.device)
    return run_scan(pipeline, Path(path), Path(out_dir), args)


def local_cluster(workers: int):
    """N worker processes, threads per worker so that workers × threads ≤ the machine's cores.

    Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back to the OS). That
    pins glibc's mmap threshold at 128 kB, so every large array of a scan is a fresh mapping whose
    pages fault in again: a scan took 20 s in such a worker against 13.5 s in a plain one-thread
    process (benchmarks/batch.py). Our workers keep glibc's default (None unsets a variable there).
    A nanny also copies these variables into its own process's environment, which workers inherit:
    a Dask cluster started earlier in the same process with the default would pass the value on."""
    import dask
    from dask.distributed import LocalCluster

    from .volume import InputError

    if workers < 1:
        raise InputError(f"--workers must be 1 or more (got {workers})")
    threads = max(1, (os.cpu_count() or 1) // workers)
    environ = {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in environ.items()}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def client_for(workers=None, scheduler=None):
    """A Dask client on a new local cluster (workers) or an existing one (scheduler address)."""
    try:
        from dask.distributed import Client
    except ImportError:
        from .volume import InputError

        raise InputError("--workers/--scheduler need Dask: pip install 'dask[distributed]'")
    if scheduler:
        return Client(scheduler)
    return Client(local_cluster(workers))


def dask_batch(inputs, out_dir: Path, args, workers=None, scheduler=None, client=None):
    """Submit one task per scan now; return an iterator of (row, summary, trace) as the scans finish
    (see runner.run_scan). A cluster made here is closed when the iterator ends."""
    own = client is None
    client = client or client_for(workers, scheduler)
    options = {k: v for k, v in vars(args).items() if k not in ("inputs", "workers", "scheduler")}
    futures = [client.submit(scan_task, str(path), str(out_dir), options, key=f"scan-{n}-{Path(path).name}", pure=False)
               for n, path in enumerate(inputs)]
    return _as_they_finish(client, futures, own)


def _as_they_finish(client, futures, close):
    from dask.distributed import as_completed

    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        if close:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
