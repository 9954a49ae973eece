"""A tiny model trained by ICHTrainingLib.loop.fit, the loop every trainer uses; run by
test_distributed.py once under torchrun (2 processes) and once as the single-process equivalent.

    python ddp_tiny.py OUT BATCH_SIZE EPOCHS     (each rank writes OUT/rank<R>.pt: its final weights)
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ICHTrainingLib.metrics import roc_auc
from ICHTrainingLib.loop import TrainConfig, rank_and_world, end_distributed, fit


def main(out: str, batch_size: int, epochs: int):
    data = np.random.default_rng(1)
    x = data.normal(size=(96, 16)).astype(np.float32)
    y = (x @ data.normal(size=16) > 0).astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def batches(epoch, rng):
        order = rng.permutation(len(x))
        for s in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            yield torch.from_numpy(x[idx]), torch.from_numpy(y[idx])

    def loss_fn(m, xb, yb):
        return F.binary_cross_entropy_with_logits(m(xb)[:, 0], yb)

    def validate(m):
        return {"val_auc": roc_auc(y.tolist(), torch.sigmoid(m(torch.from_numpy(x))[:, 0]).tolist())}

    cfg = TrainConfig(method="tiny", out=out, epochs=epochs, batch_size=batch_size, lr=0.05, device="cpu",
                      constant_lr=True)
    fit(model, cfg, batches, loss_fn, validate, name="tiny", select="val_auc")
    rank, _ = rank_and_world()
    torch.save(model.state_dict(), Path(out) / f"rank{rank}.pt")
    end_distributed()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
