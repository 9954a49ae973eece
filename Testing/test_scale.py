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
