"""Training with torchrun: two real processes (gloo on CPU) train through the shared loop; both ranks
end with identical weights, equal to the documented single-process equivalent (batch size K·B);
a resumed run continues from rank 0's checkpoint; `ich-train` under torchrun writes its model once."""
import json
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def run(command, **kw):
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=HERE, **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(path):
    return torch.load(path, weights_only=True)


def assert_close(a, b, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def test_two_processes_step_like_one_with_twice_the_batch_and_resume(tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    log = run([*TORCHRUN, "ddp_tiny.py", str(ddp), "8", "3"]).stderr
    assert log.count("tiny epoch 3/3") == 1, "rank 0 alone reports"
    run([sys.executable, "ddp_tiny.py", str(single), "16", "3"])
    rank0, rank1 = weights(ddp / "rank0.pt"), weights(ddp / "rank1.pt")
    assert_close(rank0, rank1, atol=0)  # DDP keeps the replicas bit-identical
    assert_close(rank0, weights(single / "rank0.pt"), atol=1e-5)
    history = torch.load(ddp / "tiny.checkpoint.pt", weights_only=True)["history"]
    assert [e["epoch"] for e in history] == [0, 1, 2] and history[-1]["val_auc"] > 0.8, "it learned"

    log = run([*TORCHRUN, "ddp_tiny.py", str(ddp), "8", "5"]).stderr
    assert "tiny: resuming after epoch 3" in log and "tiny epoch 4/5" in log and "tiny epoch 1/5" not in log
    run([sys.executable, "ddp_tiny.py", str(tmp_path / "single5"), "16", "5"])
    assert_close(weights(ddp / "rank0.pt"), weights(ddp / "rank1.pt"), atol=0)
    assert_close(weights(ddp / "rank0.pt"), weights(tmp_path / "single5" / "rank0.pt"), atol=1e-5)


def test_ich_train_under_torchrun_writes_one_model(tmp_path):
    out = tmp_path / "run"
    proc = run([*TORCHRUN, "-m", "ICHTrainingLib.cli", "mil", "--data", "phantom:1-2", "--cache", str(tmp_path / "cache"),
                "--out", str(out), "--epochs", "1", "--max-batches", "2", "--batch-size", "4", "--device", "cpu",
                "--workers", "1"])
    assert proc.stdout.count('"validation"') == 1, "the metrics are printed once, by rank 0"
    card = json.loads((out / "mil-maxpool.card.json").read_text())
    assert card["training"]["processes"] == 2
    assert len(card["history"]) == 1 and card["history"][0]["loss"] == card["history"][0]["loss"]  # not NaN
    assert (out / "mil-maxpool.pt").exists() and (out / "entry.json").exists()
