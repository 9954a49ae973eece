"""The training loop every network family shares: configuration, patient split, starting weights,
distributed data parallelism (torchrun), best-epoch selection, checkpoints and the files a run
writes (`<name>.pt`, weights only, and `<name>.card.json`).

Run under `torchrun --nproc-per-node N` for DDP (gloo on CPU, NCCL on GPU): each rank takes its
share of every epoch's batches (`shard`), rank 0 validates, checkpoints and writes.
"""
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from ICHLocalizationLib.models import choose_device, file_sha256


@dataclass
class TrainConfig:
    method: str  # mil | unet | cascade
    out: str
    variant: str = "maxpool"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-8
    val_fraction: float = 0.15
    device: str = "auto"
    seed: int = 0
    max_batches: Optional[int] = None  # per epoch; short runs for tests
    fold: int = 0
    folds: int = 1
    data: List[str] = field(default_factory=list)  # description of the training data
    command: str = ""
    init: Optional[str] = None  # weights file (model.pt of an earlier run) to start from: fine-tuning
    balance: str = "slice"  # U-Net bleed patches: "slice" (paper 003) or "subtype" (each subtype equally often)
    batch_dice: bool = False  # U-Net Dice loss over the whole batch per class (nnU-Net), not per patch
    context_mm: float = 0.0  # U-Net, MIL, cascade axial nets: 2.5D, also read the slices this far above and below
    constant_lr: bool = False  # no step decay (a fine-tuning round that stops while the rate is still high)
    planes: Optional[List[str]] = None  # cascade: train these planes' banks only, the others kept from init
    gate_only: bool = False  # U-Net: train its slice gate only (slice labels suffice), the U-Net kept from init
    hard_negatives: float = 1.0  # MIL: the share of each batch's negatives, the highest-scored, that the loss counts
    input_size: int = 128  # MIL: the side (px) it reads the 256 head crop at: 128 (paper 001) or 256


def split_by_patient(records, val_fraction=0.15, seed=0, fold=0, folds=1):
    """(train, val) with no patient in both (paper 004's lesson). folds > 1: K-fold by patient."""
    patients = sorted({r["patient"] for r in records})
    rng = np.random.default_rng(seed)
    rng.shuffle(patients)
    if folds > 1:
        val_p = set(patients[fold::folds])
    else:
        n_val = max(1, int(round(len(patients) * val_fraction))) if len(patients) > 1 else 0
        val_p = set(patients[:n_val])
    return [r for r in records if r["patient"] not in val_p], [r for r in records if r["patient"] in val_p]


def init_file(cfg: TrainConfig) -> Path:
    path = Path(cfg.init)
    if not path.is_file():
        raise ValueError(f"--init {path}: no such weights file (give the model .pt of an earlier run)")
    return path


def initial_state(cfg: TrainConfig, key: Optional[str] = None):
    """The weights of cfg.init (or its `key` part: 'unet', 'gate', a cascade plane), or None to start
    from scratch. Loaded as tensors only, like the bundled models."""
    if not cfg.init:
        return None
    path = init_file(cfg)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickled code, truncated file, not a torch file
        raise ValueError(f"--init {path}: not a weights file this trainer can load ({type(exc).__name__})")
    if key is not None:
        if not isinstance(state, dict) or key not in state:
            raise ValueError(f"--init {path}: has no '{key}' weights; give a {cfg.method} model of the same kind")
        state = state[key]
    return state


def start_from(model, cfg: TrainConfig, key: Optional[str] = None):
    """Load cfg.init into model (a clear error when the file holds another network). A one-slice
    U-Net starts a 2.5D one: its first convolution reads the centre slice, the neighbours start at 0."""
    state = initial_state(cfg, key)
    if state is not None:
        state = _inflate_to_neighbours(state, model.state_dict())
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            detail = " ".join(line.strip() for line in str(exc).splitlines()[1:2])[:160]
            raise ValueError(f"--init {cfg.init}: its weights do not fit this {cfg.method} network ({detail})")
    return model


def _inflate_to_neighbours(state, target):
    """Weights read by 3 input channels where the model has 9 (3 windows × slice below, centre, above)
    take the centre's place; the model then starts as the one-slice network it was."""
    out = dict(state)
    for k, w in state.items():
        t = target.get(k)
        if t is not None and w.dim() == 4 and t.dim() == 4 and w.shape[1] == 3 and t.shape[1] == 9 \
                and w.shape[0] == t.shape[0] and w.shape[2:] == t.shape[2:]:
            grown = torch.zeros_like(t)
            grown[:, 3:6] = w
            out[k] = grown
    return out


def rank_and_world():
    """(rank, world) under torchrun, else (0, 1); joins the process group on first use."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world


def end_distributed():
    """Leave the process group (torchrun), if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_device(cfg_device: str, world: int) -> torch.device:
    """The device of this process: under torchrun with GPUs, the GPU of its local rank."""
    device = choose_device(cfg_device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def shard(batches, rank: int, world: int):
    """This rank's share of an epoch: of every `world` consecutive batches it takes the rank-th, and a
    last incomplete group is dropped, so every rank takes the same number of steps (DDP's gradient
    all-reduce needs that). K ranks with batch size B thus step like one process with batch size K·B
    (exactly so for a model without BatchNorm, whose statistics stay per process)."""
    if world == 1:
        yield from batches
        return
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == world:
            yield group[rank]
            group = []


def _mean_over_ranks(values, world: int) -> float:
    total = torch.tensor([float(np.sum(values)), float(len(values))], dtype=torch.float64)
    if world > 1:
        torch.distributed.all_reduce(total)
    return float(total[0] / total[1]) if total[1] else math.nan


def _from_rank0(obj, world: int):
    """rank 0's value of obj on every rank (validation runs on rank 0 only)."""
    if world == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def lr_milestones(cfg: TrainConfig):
    """Epochs after which the rate drops ×0.1: at 2/3 and 5/6 of the run (the MIL authors' 20/25 of 30),
    none with cfg.constant_lr."""
    if cfg.constant_lr:
        return []
    return sorted({max(1, int(cfg.epochs * 2 / 3)), max(1, int(cfg.epochs * 5 / 6))})


def fit(model, cfg: TrainConfig, batches: Callable, loss_fn: Callable, validate: Callable, name="model",
        progress: Callable = None, select: Optional[str] = None):
    """Adam with the step decay of lr_milestones.

    batches(epoch, rng) yields (inputs, targets) on the CPU; validate(model) → dict of metrics.
    With `select` (a metric of validate, higher is better) the model ends with the weights of its best
    validation epoch, as papers 001–003 keep them; that epoch is marked `kept` in the history.
    Resumes from out/<name>.checkpoint.pt. Returns the history.
    """
    rank, world = rank_and_world()
    device = rank_device(cfg.device, world)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.to(device)
    if device.type == "cpu":  # oneDNN trains ~1.8× faster on channels-last weights (U-Net, 2 cores)
        model.to(memory_format=torch.channels_last)
    train_model = model
    if world > 1:  # DDP broadcasts rank 0's weights now and averages the gradients at every step
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=lr_milestones(cfg), gamma=0.1)
    ckpt = out / f"{name}.checkpoint.pt"
    history, start, best = _resume(ckpt, model, opt, sched, rank, name)
    for epoch in range(start, cfg.epochs):
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)  # the same order on every rank; shard() splits it
        train_model.train()
        t0, losses = time.time(), []
        for b, (x, y) in enumerate(shard(batches(epoch, rng), rank, world)):
            if cfg.max_batches and len(losses) >= cfg.max_batches:
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True) if torch.is_tensor(y) else y
            loss = loss_fn(train_model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if progress:
                progress(epoch, b, float(loss))
        sched.step()
        model.eval()
        with torch.inference_mode():
            metrics = _from_rank0(validate(model) if rank == 0 else None, world)
        entry = {"epoch": epoch, "loss": _mean_over_ranks(losses, world), "seconds": round(time.time() - t0, 1),
                 **metrics}
        history.append(entry)
        value = metrics.get(select, math.nan) if select else math.nan
        if np.isfinite(value) and (best is None or value > best["value"]):
            best = {"epoch": epoch, "value": float(value),
                    "model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
        log_rank0(rank, f"{name} epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items() if k != "epoch"))
        _checkpoint(ckpt, rank, world, model=model.state_dict(), optimizer=opt.state_dict(),
                    scheduler=sched.state_dict(), history=history, epoch=epoch, best=best)
    model.to("cpu")
    if best is not None:
        model.load_state_dict(best["model"])
        history[best["epoch"]]["kept"] = True
        log_rank0(rank, f"{name}: keeping epoch {best['epoch'] + 1} ({select} {best['value']:.4g})")
    return history


def _resume(ckpt: Path, model, opt, sched, rank: int, name: str):
    """(history, first epoch, best so far) from the checkpoint, which every rank reads; a fresh start
    without one."""
    if not ckpt.exists():
        return [], 0, None
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    log_rank0(rank, f"{name}: resuming after epoch {int(state['epoch']) + 1}")
    return state["history"], int(state["epoch"]) + 1, state.get("best")


def _checkpoint(ckpt: Path, rank: int, world: int, **state):
    """Rank 0 writes the checkpoint (whole or not at all); the other ranks wait until it has."""
    if rank == 0:
        tmp = ckpt.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt)
    if world > 1:
        torch.distributed.barrier()


EPOCH_LINE = re.compile(r"(?P<name>[\w-]+) epoch (?P<epoch>\d+)/(?P<epochs>\d+): loss (?P<loss>[\d.eE+-]+|nan)(?P<rest>.*)")


def parse_epoch_line(line):
    """'unet epoch 3/12: loss 0.51, seconds 50, val_dice 0.6' (what fit() prints) → dict, or None."""
    m = EPOCH_LINE.search(line)
    if not m:
        return None
    metrics = {}
    for part in m.group("rest").split(","):
        kv = part.strip().split(" ")
        if len(kv) == 2:
            try:
                metrics[kv[0]] = float(kv[1])
            except ValueError:
                pass
    return {"name": m.group("name"), "epoch": int(m.group("epoch")), "epochs": int(m.group("epochs")),
            "loss": float(m.group("loss")), "rest": m.group("rest"), "metrics": metrics}


def log_rank0(rank, msg):
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


def write_model(out: Path, name: str, state: dict, card: dict):
    """model weights (state dict only) + card.json with their sha256."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    torch.save(state, path)
    card = dict(card, file=path.name, sha256=file_sha256(path))
    (out / f"{name}.card.json").write_text(json.dumps(card, indent=1, default=json_default))
    return path, card


def json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


@dataclass
class Trained:
    """What a family's trainer hands to run_training: weights, their catalogue description, history."""
    state: dict
    name: str  # weights file stem
    model_id: str
    input: dict
    params: dict
    history: list
    extra_metrics: dict = field(default_factory=dict)


def data_source(cfg: TrainConfig) -> str:
    """'phantom', 'real' or 'real+phantom': what a model learned from (part of its catalogue id)."""
    from .datasets import split_specs

    kinds = {spec.split(":")[0].strip().lower() for data in cfg.data for spec in split_specs(data)}
    real, phantom = bool(kinds - {"phantom"}), "phantom" in kinds
    return "real+phantom" if real and phantom else "real" if real else "phantom"
