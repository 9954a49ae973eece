"""Scale-out: `ich-localize --workers 2` runs the batch on a real two-worker local Dask cluster with the
serial batch's guarantees and identical results; the default path never imports Dask."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed")
BIN = Path(sys.executable).parent


def localize(args, models):
    return subprocess.run([str(BIN / "ich-localize"), "--device", "cpu", "--models", str(models), "--methods", "mil,unet",
                           *map(str, args)], capture_output=True, text=True, timeout=900)


def findings(folder):
    """findings.json without what differs between runs by nature (timings)."""
    data = json.loads((folder / "findings.json").read_text())
    for run in data.get("runs", []):
        run.pop("seconds", None)
    return data


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    from ICHLocalizationLib.phantom import generate, write_phantom

    folder = tmp_path_factory.mktemp("scans")
    for seed in (31, 32):
        write_phantom(generate(seed, size=128, slices=12), folder / f"p{seed}", "nifti")
        (folder / f"p{seed}" / "ct.nii.gz").rename(folder / f"p{seed}.nii.gz")
    (folder / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 cut")
    return [folder / "p31.nii.gz", folder / "bad.nii.gz", folder / "p32.nii.gz"]


def test_two_dask_workers_give_the_serial_results_and_keep_the_batch_guarantees(scans, untrained_models, tmp_path):
    serial, dask = tmp_path / "serial", tmp_path / "dask"
    assert localize([scans[0], "--out", dask], untrained_models).returncode == 0  # already finished before the batch
    stamp = (dask / "p31" / "findings.json").stat().st_mtime_ns
    runs = {out: localize([*scans, "--out", out, *extra], untrained_models)
            for out, extra in ((serial, []), (dask, ["--workers", "2"]))}
    for out, proc in runs.items():
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        rows = list(csv.DictReader(open(out / "summary.csv")))
        assert [r["case"] for r in rows] == ["p31", "bad", "p32"], "summary.csv in input order"
        assert not list(out.glob(".*partial*")) and not (out / "bad").exists()
        assert "[3/3]" in proc.stdout
    statuses = {r["case"]: r["status"] for r in csv.DictReader(open(dask / "summary.csv"))}
    assert statuses == {"p31": "ok", "bad": "failed", "p32": "ok"}, "the finished scan keeps its row"
    assert "p31.nii.gz: already done" in runs[dask].stdout
    assert (dask / "p31" / "findings.json").stat().st_mtime_ns == stamp, "a finished scan is not redone"
    for case in ("p31", "p32"):
        assert findings(dask / case) == findings(serial / case), case


def test_the_default_path_never_imports_dask(scans, untrained_models, tmp_path):
    code = ("import sys; from ICHLocalizationLib import cli; "
            f"code = cli.main([{str(scans[0])!r}, '--out', {str(tmp_path / 'o')!r}, '--methods', 'mil', "
            f"'--device', 'cpu', '--models', {str(untrained_models)!r}]); "
            "assert code == 0, code; assert 'dask' not in sys.modules and 'distributed' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_script_runs_the_batch_on_its_own_dask_client(scans, untrained_models, tmp_path):
    """The library function takes a Client (as a notebook on a cluster has one) and leaves it open;
    Slicer's processFiles passes such a client's scheduler address to its child ich-localize."""
    from dask.distributed import Client, LocalCluster

    from ICHLocalizationLib.batch import scale_args
    from ICHLocalizationLib.cli import localize

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        rows = localize(scans, tmp_path / "out", client=client, methods="mil", device="cpu", models=str(untrained_models))
        assert [(r["case"], r["status"]) for r in rows] == [("p31", "ok"), ("bad", "failed"), ("p32", "ok")]
        assert client.status == "running", "a client the caller gave is not closed"
        assert scale_args(scheduler=client) == ["--scheduler", cluster.scheduler_address]
    assert (tmp_path / "out" / "p32" / "findings.json").exists()
    assert list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))[1]["status"] == "failed"
    with pytest.raises(TypeError, match="unknown option"):
        localize(scans, tmp_path / "o2", method="mil")


def test_zero_workers_is_refused_in_one_line(scans, untrained_models, tmp_path):
    proc = localize([scans[0], "--out", tmp_path / "o", "--workers", "0"], untrained_models)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "ich-localize: --workers must be 1 or more (got 0)"


def test_local_workers_split_the_cores_and_keep_glibcs_default_allocator(monkeypatch):
    """workers × threads ≤ cores, and no MALLOC_TRIM_THRESHOLD_ (Dask's default made a scan 1.5× slower).
    A default Dask cluster started by an earlier test leaves the variable in this process's environment
    (Dask's nanny writes it there), which workers would inherit: it is removed first."""
    import os

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    from dask.distributed import Client

    from ICHLocalizationLib.scale import local_cluster

    def worker_state():
        import torch

        return os.environ.get("MALLOC_TRIM_THRESHOLD_"), torch.get_num_threads()

    with local_cluster(2) as cluster, Client(cluster) as client:
        states = list(client.run(worker_state).values())
    assert states == [(None, max(1, (os.cpu_count() or 1) // 2))] * 2
