"""Trainers, one per network family: MIL classifier, U-Net (+ slice gate), three-plane cascade.

Every trainer reads records (see datasets/phantom.py: the axial head crop, per-slice subtypes and
the aligned cascade grid, all with patient ids), splits them by patient, checkpoints every epoch
(`checkpoint.pt`, resumable), and writes `model.pt` (weights only) and `card.json` (data, command,
metrics). Run under `torchrun --nproc_per_node N` for distributed data parallelism (gloo on CPU,
NCCL on GPU); rank 0 writes the files.
"""
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ICHLocalizationLib.findings import SUBTYPES
from ICHLocalizationLib.methods.cascade3d import PLANES, context_offset, plane_bank, plane_input, plane_slices
from ICHLocalizationLib.models import choose_device, file_sha256
from ICHLocalizationLib.networks import MILNet, SliceClassifier, build_unet
from ICHLocalizationLib.preprocessing import (channels_torch, half_crop, neighbour_offset, slices_in_context,
                                              with_neighbours)

from .augment import slice_augmentation
from .metrics import roc_auc



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
    context_mm: float = 0.0  # U-Net, cascade axial nets: 2.5D, also read the slices this far above and below
    constant_lr: bool = False  # no step decay (a fine-tuning round that stops while the rate is still high)
    planes: Optional[List[str]] = None  # cascade: train these planes' banks only, the others kept from init
    gate_only: bool = False  # U-Net: train its slice gate only (slice labels suffice), the U-Net kept from init


# --- splits and the training loop ------------------------------------------------------------------
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


def _dist():
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
    rank, world = _dist()
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
        _log(rank, f"{name} epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items() if k != "epoch"))
        _checkpoint(ckpt, rank, world, model=model.state_dict(), optimizer=opt.state_dict(),
                    scheduler=sched.state_dict(), history=history, epoch=epoch, best=best)
    model.to("cpu")
    if best is not None:
        model.load_state_dict(best["model"])
        history[best["epoch"]]["kept"] = True
        _log(rank, f"{name}: keeping epoch {best['epoch'] + 1} ({select} {best['value']:.4g})")
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
    _log(rank, f"{name}: resuming after epoch {int(state['epoch']) + 1}")
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


def _log(rank, msg):
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


def write_model(out: Path, name: str, state: dict, card: dict):
    """model weights (state dict only) + card.json with their sha256."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    torch.save(state, path)
    card = dict(card, file=path.name, sha256=file_sha256(path))
    (out / f"{name}.card.json").write_text(json.dumps(card, indent=1, default=_json_default))
    return path, card


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


# --- shared sampling -------------------------------------------------------------------------------
def _stack_hu(slices) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(s, np.float32) for s in slices]))


def _augment_batch(aug, images, labels=None):
    """Images (H, W), or (S, H, W) slices that move together; labels (H, W)."""
    xs, ys = [], []
    for n, img in enumerate(images):
        img = np.asarray(img, np.float32)
        d = {"image": img[None] if img.ndim == 2 else img}
        if labels is not None:
            d["label"] = np.asarray(labels[n], np.float32)[None]
        d = aug(d)
        xs.append(np.asarray(d["image"])[0] if img.ndim == 2 else np.asarray(d["image"]))
        if labels is not None:
            ys.append(np.asarray(d["label"])[0])
    return xs, ys


def _mil_slices(record):
    """The slices of a record that MIL validation reads: all of them; of a bleed-free twin
    (datasets/phantom.py) only those where its original bleeds — the others repeat the original's."""
    if "twin_of_bleed" in record:
        return np.flatnonzero(record["twin_of_bleed"])
    return range(len(record["slice_subtypes"]))


def _slice_items(train):
    """Every slice of the training scans with its 'any bleed' label and the BCE positive weight."""
    items = [(r, k) for r in train for k in range(len(r["slice_subtypes"]))]
    labels = np.array([bool(r["slice_subtypes"][k].any()) for r, k in items])
    pos_weight = torch.tensor(max(1.0, (~labels).sum() / max(1, labels.sum())))
    return items, labels, pos_weight


def _slice_batches(items, labels, aug, channels, batch_size):
    """Shuffled batches of augmented 128×128 head crops with their slice labels."""
    def batches(epoch, rng):
        order = rng.permutation(len(items))
        for s in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            hu = half_crop(np.stack([items[i][0]["crop_hu"][items[i][1]] for i in idx]))
            xs, _ = _augment_batch(aug, hu)
            yield channels_torch(_stack_hu(xs), channels), torch.from_numpy(labels[idx].astype(np.float32))
    return batches


def _paired_slice_batches(train, aug, channels, batch_size):
    """Batches of matched pairs only: a bleed slice and the same slice of its bleed-free twin,
    augmented together (one affine, one intensity change), so that the blood is all that tells the
    two apart — bleed-free slices of other heights would bring back the slice-height and head-outline
    cues (a model trained with them peaked in the air beside the head). Every bleed slice comes once
    per epoch; half of each batch is positive, so the BCE needs no positive weight."""
    twins = {r["patient"]: r for r in train if "twin_of_bleed" in r}
    pairs = [(r, twins[r["patient"]], int(k)) for r in train if "twin_of_bleed" not in r and r["patient"] in twins
             for k in np.flatnonzero(r["slice_subtypes"].any(axis=1))]
    n_pairs = max(1, batch_size // 2)
    y = torch.tensor([1.0] * n_pairs + [0.0] * n_pairs)

    def batches(epoch, rng):
        order = rng.permutation(len(pairs))
        for s in range(0, len(order) - n_pairs + 1, n_pairs):
            chosen = [pairs[i] for i in order[s:s + n_pairs]]
            hu = half_crop(np.stack([x for r, t, k in chosen for x in (r["crop_hu"][k], t["crop_hu"][k])]))
            together, _ = _augment_batch(aug, list(hu.reshape(len(chosen), 2, *hu.shape[-2:])))
            yield channels_torch(_stack_hu([p[0] for p in together] + [p[1] for p in together]), channels), y

    return batches, torch.tensor(1.0)


def _validation_slices(model, records, channels, logits):
    """(labels, probabilities) of every slice of the validation scans."""
    ys, ps = [], []
    device = next(model.parameters()).device
    for r in records:
        x = channels_torch(torch.from_numpy(half_crop(r["crop_hu"])), channels).to(device)
        ps += torch.sigmoid(logits(model, x)).cpu().tolist()
        ys += r["slice_subtypes"].any(axis=1).tolist()
    return ys, ps


def mil_validation(model, records):
    """Slice AUC and accuracy over the slices a MIL trainer reads, and `val_peak_in_bleed`: on how
    many bleed slices the likelihood map peaks in the bleed (±1 pixel of the 128 crop) — whether the
    network localizes what it classifies, which the slice AUC alone does not tell."""
    device = next(model.parameters()).device
    ys, ps, hits, bleeds = [], [], 0, 0
    for r in records:
        ks = np.asarray(list(_mil_slices(r)), int)
        if not len(ks):
            continue
        x = channels_torch(torch.from_numpy(half_crop(r["crop_hu"][ks])), "mil-code").to(device)
        prob, lmap = model.likelihood(x)
        ps += prob.cpu().tolist()
        ys += r["slice_subtypes"][ks].any(axis=1).tolist()
        lab = torch.from_numpy(r["crop_labels"][ks].astype(np.float32))[:, None]
        near = F.max_pool2d(F.max_pool2d(lab, 2), 3, stride=1, padding=1)[:, 0] > 0  # 128 grid, ±1 px
        peak = lmap.flatten(1).argmax(dim=1).cpu()
        bleed = near.flatten(1).any(dim=1)
        hits += int(near.flatten(1)[torch.arange(len(ks)), peak][bleed].sum())
        bleeds += int(bleed.sum())
    acc = float(np.mean((np.array(ps) > 0.5) == np.array(ys))) if ys else math.nan
    return {"val_auc": roc_auc(ys, ps), "val_acc": acc, "val_peak_in_bleed": hits / bleeds if bleeds else math.nan}


def train_mil(records, cfg: TrainConfig, progress=None):
    """Slice labels only ('any ICH'), weighted BCE, the paper's augmentations, 128×128 input; with
    bleed-free twins among the records, batches of matched pairs (_paired_slice_batches)."""
    torch.manual_seed(cfg.seed)
    train, val = split_by_patient(records, cfg.val_fraction, cfg.seed)
    aug = slice_augmentation(with_label=False, seed=cfg.seed)
    if any("twin_of_bleed" in r for r in train):
        batches, pos_weight = _paired_slice_batches(train, aug, "mil-code", cfg.batch_size)
    else:
        items, labels, pos_weight = _slice_items(train)
        batches = _slice_batches(items, labels, aug, "mil-code", cfg.batch_size)
    model = start_from(MILNet(cfg.variant), cfg)

    def loss_fn(m, x, y):
        logit, _ = m(x)
        return F.binary_cross_entropy_with_logits(logit, y, pos_weight=pos_weight.to(x.device))

    history = fit(model, cfg, batches, loss_fn, lambda m: mil_validation(m, val), name=f"mil-{cfg.variant}",
                  progress=progress, select="val_auc")
    return model, history, val


# --- U-Net with its slice gate ----------------------------------------------------------------------
UNET_PATCH = 128


def unet_patch_index(records):
    """Where _unet_patches draws from: every bleed slice, the slices holding each subtype (on the
    crop the U-Net reads), every slice."""
    pos_slices, by_subtype = [], {s: [] for s in range(1, len(SUBTYPES) + 1)}
    for r in records:
        for k in np.nonzero(r["crop_labels"].any(axis=(1, 2)))[0]:
            pos_slices.append((r, k))
            for s in np.unique(r["crop_labels"][k]):
                if s:
                    by_subtype[int(s)].append((r, k))
    all_slices = [(r, k) for r in records for k in range(len(r["slice_subtypes"]))]
    return pos_slices, [(s, lst) for s, lst in by_subtype.items() if lst], all_slices


def _unet_patches(index, n, rng, aug, balance="slice", context_mm=0.0, p_single=0.1):
    """Paper 003's sampling: patches around bleeds (positive oversampling, two of three) plus random
    patches. balance="subtype" first draws a subtype, each equally often, then a slice holding it and
    a pixel of it: thin SAH and small IVH then get as many patches as the large SDH (a departure).
    context_mm: each patch also holds the slices that far above and below (one augmentation for the
    three); with probability p_single the slice stands in for its neighbours, as for a lone 2D image."""
    pos_slices, by_subtype, all_slices = index
    imgs, labs = [], []
    size = all_slices[0][0]["crop_hu"].shape[-1]
    half = UNET_PATCH // 2
    for i in range(n):
        positive = pos_slices and i % 3 != 2
        target = None
        if positive and balance == "subtype":
            target, lst = by_subtype[rng.integers(len(by_subtype))]
            r, k = lst[rng.integers(len(lst))]
        elif positive:
            r, k = pos_slices[rng.integers(len(pos_slices))]
        else:
            r, k = all_slices[rng.integers(len(all_slices))]
        lab = r["crop_labels"][k]
        if positive:
            jj, ii = np.nonzero(lab == target if target is not None else lab)
            c = rng.integers(len(jj))
            cj, ci = jj[c] + rng.integers(-40, 41), ii[c] + rng.integers(-40, 41)
        else:
            cj, ci = rng.integers(half, size - half + 1, 2)
        j0 = int(np.clip(cj - half, 0, size - UNET_PATCH))
        i0 = int(np.clip(ci - half, 0, size - UNET_PATCH))
        if context_mm:
            offset = 0 if rng.random() < p_single else neighbour_offset(r["slice_mm"], context_mm)
            imgs.append(with_neighbours(r["crop_hu"], [k], offset)[0, :, j0:j0 + UNET_PATCH, i0:i0 + UNET_PATCH])
        else:
            imgs.append(r["crop_hu"][k, j0:j0 + UNET_PATCH, i0:i0 + UNET_PATCH])
        labs.append(lab[j0:j0 + UNET_PATCH, i0:i0 + UNET_PATCH])
    xs, ys = _augment_batch(aug, imgs, labs)
    return channels_torch(_stack_hu(xs), "unet"), torch.from_numpy(np.round(np.stack(ys)).astype(np.int64))


def train_unet(records, cfg: TrainConfig, progress=None, patches_per_epoch=2400):
    """BCE + Dice (MONAI DiceCELoss over the 6 classes) on 128×128 patches of the 256 head crop."""
    from monai.losses import DiceCELoss

    torch.manual_seed(cfg.seed)
    train, val = split_by_patient(records, cfg.val_fraction, cfg.seed, cfg.fold, cfg.folds)
    aug = slice_augmentation(with_label=True, seed=cfg.seed)
    if cfg.balance not in ("slice", "subtype"):
        raise ValueError(f"balance {cfg.balance!r}: choose 'slice' or 'subtype'")
    model = start_from(build_unet(context=bool(cfg.context_mm)), cfg, "unet")
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=cfg.batch_dice)

    index = unet_patch_index(train)

    def batches(epoch, rng):
        for _ in range(patches_per_epoch // cfg.batch_size):
            x, y = _unet_patches(index, cfg.batch_size, rng, aug, cfg.balance, cfg.context_mm)
            yield x, y

    def loss_fn(m, x, y):
        return dice_ce(m(x), y[:, None])

    def validate(m):
        return {"val_dice": unet_dice(m, val, context_mm=cfg.context_mm)}

    history = fit(model, cfg, batches, loss_fn, validate, name="unet", progress=progress, select="val_dice")
    gate, gate_history = train_gate(records, cfg, progress)
    return model, gate, history + gate_history, val


@torch.inference_mode()
def unet_dice(model, records, threshold=0.5, context_mm=0.0):
    """Mean Dice over val slices with bleed (paper 003's figure), foreground = not background."""
    model.eval()
    device = next(model.parameters()).device
    dices = []
    for r in records:
        pos = np.nonzero(r["slice_subtypes"].any(axis=1))[0]
        if not len(pos):
            continue
        hu = slices_in_context(r["crop_hu"], pos, r["slice_mm"], context_mm).astype(np.float32)
        x = channels_torch(torch.from_numpy(hu), "unet").to(device)
        prob = 1 - torch.softmax(model(x), dim=1)[:, 0].cpu().numpy()
        pred, truth = prob >= threshold, r["crop_labels"][pos] > 0
        inter = (pred & truth).sum(axis=(1, 2))
        dices += list(2 * inter / np.maximum(1, pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))))
    return float(np.mean(dices)) if dices else math.nan


def train_gate(records, cfg: TrainConfig, progress=None):
    """The light slice classifier that gates the U-Net (paper 002), on the 128 head crop."""
    gcfg = TrainConfig(**{**asdict(cfg), "epochs": max(2, cfg.epochs // 2)})
    train, val = split_by_patient(records, cfg.val_fraction, cfg.seed, cfg.fold, cfg.folds)
    items, labels, pos_weight = _slice_items(train)
    batches = _slice_batches(items, labels, slice_augmentation(with_label=False, seed=cfg.seed + 1), "unet", cfg.batch_size)
    model = start_from(SliceClassifier(), gcfg, "gate")

    def loss_fn(m, x, y):
        return F.binary_cross_entropy_with_logits(m(x), y, pos_weight=pos_weight.to(x.device))

    def validate(m):
        return {"gate_val_auc": roc_auc(*_validation_slices(m, val, "unet", lambda net, x: net(x)))}

    return model, fit(model, gcfg, batches, loss_fn, validate, name="unet-gate", progress=progress, select="gate_val_auc")


# --- three-plane cascade --------------------------------------------------------------------------
def plane_labels(labels: np.ndarray, plane: str) -> np.ndarray:
    """(n_slices, 6): any bleed, then each subtype, per slice of the plane."""
    lab = plane_slices(labels, plane)
    per = np.stack([(lab == i + 1).any(axis=(1, 2)) for i in range(len(SUBTYPES))], axis=1)
    return np.concatenate([per.any(axis=1, keepdims=True), per], axis=1)


def record_plane_labels(record, plane: str) -> Optional[np.ndarray]:
    """A record's slice labels in one plane of its cascade grid, or None where it has none there:
    a label map (phantom masks, PHE boxes) gives all three planes, per-slice subtypes (CT-ICH) the
    axial plane only."""
    if "casc_labels" in record:
        return plane_labels(record["casc_labels"], plane)
    if plane == "axial" and "casc_axial_subtypes" in record:
        per = np.asarray(record["casc_axial_subtypes"], bool)
        return np.concatenate([per.any(axis=1, keepdims=True), per], axis=1)
    return None


def plane_items(train, plane: str):
    """(items, labels, positive weights) of one plane: every slice that cuts the head, of every record
    labelled in that plane; the weights balance 'ich' and each subtype net's bleed-only training."""
    items, labs = [], []
    for r in train:
        lab = record_plane_labels(r, plane)
        if lab is None:
            continue
        hu = plane_slices(r["casc_hu"], plane)
        inside = (hu > -300).mean(axis=(1, 2)) > 0.02
        for n in np.nonzero(inside)[0]:
            items.append((hu, n))
            labs.append(lab[n])
    labs = np.array(labs, bool).reshape(-1, 1 + len(SUBTYPES))
    pos_w = torch.tensor([max(1.0, (~labs[:, 0]).sum() / max(1, labs[:, 0].sum()))] +
                         [max(1.0, (labs[:, 0] & ~labs[:, s]).sum() / max(1, labs[:, s].sum())) for s in range(1, 6)])
    return items, labs, pos_w


def _cascade_batches(items, labs, aug, offset, batch_size):
    """Every bleed slice and twice as many bleed-free ones per epoch; a 2.5D plane's slice comes with
    its neighbours (one time in ten the slice stands in for them, as for a lone 2D image)."""
    def read(i, rng):
        hu, n = items[i]
        return hu[n] if not offset else with_neighbours(hu, [n], 0 if rng.random() < 0.1 else offset)[0]

    def batches(epoch, rng):
        pos, neg = np.nonzero(labs[:, 0])[0], np.nonzero(~labs[:, 0])[0]
        n = min(len(neg), 2 * len(pos)) if len(pos) else len(neg)
        order = rng.permutation(np.concatenate([pos, rng.choice(neg, n, replace=False)]))
        for s in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            xs, _ = _augment_batch(aug, [read(i, rng) for i in idx])
            yield channels_torch(_stack_hu(xs), "paper000"), torch.from_numpy(labs[idx])
    return batches


def _cascade_loss(pos_w):
    """'ich' BCE on every slice plus the subtype nets' BCE on the bleed slices (no forward pass on the rest)."""
    def loss_fn(m, x, y):
        y = y.float()
        loss = F.binary_cross_entropy_with_logits(m(x, ["ich"])["ich"], y[:, 0], pos_weight=pos_w[0].to(x.device))
        positive = y[:, 0] > 0
        if positive.any():
            out = m(x[positive], list(SUBTYPES))
            for s, name in enumerate(SUBTYPES, start=1):
                loss = loss + F.binary_cross_entropy_with_logits(out[name], y[positive, s],
                                                                 pos_weight=pos_w[s].to(x.device)) / 5.0
        return loss
    return loss_fn


def _cascade_augmentation(cfg: TrainConfig, plane: str):
    # a sagittal slice has no left-right axis to mirror; only an axial slice can arrive as an 8-bit
    # windowed 2D image (the cascade's slice score), so only the axial nets see windowed exports
    return slice_augmentation(with_label=False, seed=cfg.seed + PLANES.index(plane), rotate_deg=10.0,
                              spatial_axis_lr=None if plane == "sagittal" else 1,
                              p_windowed=0.2 if plane == "axial" else 0.0)


def train_cascade(records, cfg: TrainConfig, progress=None):
    """Per plane, a bank of six binary classifiers: 'ich' on all slices, each subtype net on the
    bleed-positive slices only (it sees only stage-1 positives at inference). A plane learns from the
    records labelled in it (record_plane_labels)."""
    torch.manual_seed(cfg.seed)
    train, val = split_by_patient(records, cfg.val_fraction, cfg.seed)
    banks, histories = {}, []
    trained = cascade_planes(cfg)
    for plane in PLANES:
        offset = context_offset(plane, cfg.context_mm)
        bank = start_from(plane_bank(offset), cfg, plane)
        banks[plane] = bank
        items, labs, pos_w = plane_items(train, plane) if plane in trained else ([], None, None)
        if not items:  # not asked for, or no record labelled in this plane: kept as cfg.init has it
            with torch.inference_mode():
                metrics = cascade_slice_metrics(bank.eval(), val, plane, offset)
            histories.append({"epoch": None, "kept_from_init": plane, **{f"{plane}_{k}": v for k, v in metrics.items()}})
            continue
        batches = _cascade_batches(items, labs, _cascade_augmentation(cfg, plane), offset, cfg.batch_size)

        def validate(m, plane=plane, offset=offset):
            return {f"{plane}_{k}": v for k, v in cascade_slice_metrics(m, val, plane, offset).items()}

        fit(bank, cfg, batches, _cascade_loss(pos_w), validate, name=f"cascade-{plane}", progress=progress,
            select=f"{plane}_ich_auc")
        ck = Path(cfg.out) / f"cascade-{plane}.checkpoint.pt"
        histories += torch.load(ck, map_location="cpu", weights_only=True)["history"]
    return banks, histories, val


def cascade_planes(cfg: TrainConfig):
    """The planes whose banks cfg trains (all three unless cfg.planes names some; the rest need cfg.init)."""
    if not cfg.planes:
        return list(PLANES)
    unknown = sorted(set(cfg.planes) - set(PLANES))
    if unknown:
        raise ValueError(f"--planes {','.join(cfg.planes)}: {', '.join(unknown)} is not one of {', '.join(PLANES)}")
    if not cfg.init and set(cfg.planes) != set(PLANES):
        raise ValueError("--planes trains some planes only: give --init with the cascade model the others come from")
    return [p for p in PLANES if p in cfg.planes]


def cascade_slice_metrics(bank, records, plane, offset=0):
    device = next(bank.parameters()).device
    ys, ps = [], []
    for r in records:
        labels = record_plane_labels(r, plane)
        if labels is None:
            continue
        hu = plane_slices(r["casc_hu"], plane).astype(np.float32)
        hu = plane_input(hu, np.arange(len(hu)), offset)
        x = channels_torch(torch.from_numpy(hu), "paper000").to(device)
        out = bank(x)
        p1 = torch.sigmoid(out["ich"]).cpu().numpy()
        ps.append(np.column_stack([p1] + [p1 * torch.sigmoid(out[s]).cpu().numpy() for s in SUBTYPES]))
        ys.append(labels)
    if not ys:
        return {}
    y, p = np.concatenate(ys), np.concatenate(ps)
    res = {"ich_auc": roc_auc(y[:, 0], p[:, 0])}
    for s, name in enumerate(SUBTYPES, start=1):
        if y[:, s].any():
            res[f"{name}_auc"] = roc_auc(y[:, s], p[:, s])
    return res


# --- one entry point for the CLI and the Slicer module ----------------------------------------------
CASCADE_FUSION = {"kernel": [0.25, 0.5, 0.25], "threshold": 0.5}


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


def _train_mil_family(records, cfg: TrainConfig, progress=None) -> Trained:
    model, history, _ = train_mil(records, cfg, progress)
    inp = {"channels": "mil-code", "size": 128, "crop": "head", "variant": cfg.variant}
    # each slice read with four flips at two sizes, all averaged (weakly_supervised.py)
    params = {"detector": dict(DEFAULT_DETECTOR[cfg.variant]), "mirror": "lr+ap", "read_sizes": [128, 160]}
    return Trained(model.state_dict(), f"mil-{cfg.variant}", f"mil-{cfg.variant}-{data_source(cfg)}", inp, params, history)


def _train_unet_family(records, cfg: TrainConfig, progress=None) -> Trained:
    if cfg.gate_only:
        return _train_unet_gate_only(records, cfg, progress)
    if not all(r.get("pixel_truth", True) for r in records):
        raise ValueError("unet learns from blood masks; the real scans here carry slice labels (and PHE boxes), "
                         "which train the MIL detector and the cascade: use ich-train mil or cascade")
    cv = cross_validate_unet(records, cfg, progress) if cfg.folds > 1 else None
    model, gate, history, _ = train_unet(records, replace(cfg, folds=1), progress)
    inp = {"channels": "unet", "size": 256, "gate_size": 128, "crop": "head"}
    if cfg.context_mm:
        inp["context_mm"] = cfg.context_mm
    params = {"threshold": 0.5, "gate_threshold": 0.5, "closing_mm": 4.0, "opening_mm": 2.0, "min_volume_ml": 0.05,
              "mirror": True}
    return Trained({"unet": model.state_dict(), "gate": gate.state_dict()}, "unet", f"unet-{data_source(cfg)}", inp,
                   params, history, {"cross_validation": cv} if cv else {})


def _train_unet_gate_only(records, cfg: TrainConfig, progress=None) -> Trained:
    """A new slice gate for the U-Net of cfg.init, learnt from slice labels (real scans included); the
    U-Net, its input and its tuned post-processing come from the catalogue entry of that file when
    there is one. The slice score becomes the gate's probability times the U-Net's evidence."""
    if not cfg.init:
        raise ValueError("--gate-only keeps the U-Net of --init: give --init with a U-Net model")
    base = catalogue_entry_of(init_file(cfg))
    inp = dict(base.input) if base else {"channels": "unet", "size": 256, "gate_size": 128, "crop": "head"}
    if cfg.context_mm:
        inp["context_mm"] = cfg.context_mm
    unet = start_from(build_unet(context=bool(inp.get("context_mm"))), cfg, "unet")
    gate, history = train_gate(records, cfg, progress)
    params = dict(base.params) if base else {"threshold": 0.5, "gate_threshold": 0.5, "closing_mm": 4.0,
                                              "opening_mm": 2.0, "min_volume_ml": 0.05, "mirror": True}
    params["slice_score"] = "gate_x_evidence"
    return Trained({"unet": unet.state_dict(), "gate": gate.state_dict()}, "unet", f"unet-gate-{data_source(cfg)}",
                   inp, params, history)


def catalogue_entry_of(weights: Path):
    """The bundled catalogue's entry for this weights file (by sha256), or None."""
    from ICHLocalizationLib.models import Catalogue, ModelError

    try:
        entries = Catalogue.load().entries
    except ModelError:
        return None
    digest = file_sha256(weights)
    return next((e for e in entries if any(f.get("sha256") == digest for f in e.files.values())), None)


def _train_cascade_family(records, cfg: TrainConfig, progress=None) -> Trained:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the cascade trains in one process (its loss runs the subtype nets on bleed slices only, "
                         "which DDP cannot average); run ich-train cascade without torchrun")
    banks, history, _ = train_cascade(records, cfg, progress)
    inp = {"channels": "paper000", "spacing_mm": [2.0, 2.0, 5.0], "size": [128, 128, 40], "aligned": True}
    if cfg.context_mm:
        inp["context_mm"] = cfg.context_mm  # the axial nets read each slice with its neighbours
    params = {"fusion": dict(CASCADE_FUSION), "stage1_threshold": 0.5, "subtype_threshold": 0.5}
    return Trained({plane: bank.state_dict() for plane, bank in banks.items()}, "cascade", f"cascade-{data_source(cfg)}",
                   inp, params, history)


# one entry per network family: adding a family is adding its trainer here
FAMILIES = {"mil": _train_mil_family, "unet": _train_unet_family, "cascade": _train_cascade_family}


def _training_card(records, cfg: TrainConfig) -> dict:
    """The card's "training" section: data, scans, command, hyper-parameters, starting weights."""
    twins = sum("twin_of_bleed" in r for r in records)
    train_part = split_by_patient(records, cfg.val_fraction, cfg.seed, cfg.fold, cfg.folds)[0]
    training = {"data": cfg.data, "scans": len(records) - twins,
                "train_scans": sum("twin_of_bleed" not in r for r in train_part), "command": cfg.command,
                "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                "device": str(choose_device(cfg.device))}
    if twins:
        training["bleed_free_twins"] = twins
    if cfg.init:
        training["init"] = {"file": str(cfg.init), "sha256": file_sha256(init_file(cfg))}
    if cfg.method == "cascade" and cfg.planes:
        training["planes"] = cascade_planes(cfg)
    if cfg.method == "unet":
        training["balance"], training["batch_dice"] = cfg.balance, cfg.batch_dice
        if cfg.gate_only:
            training["gate_only"] = True
    if cfg.method == "unet" or (cfg.method == "cascade" and cfg.context_mm):
        training["context_mm"] = cfg.context_mm
    return training


def run_training(records, cfg: TrainConfig, progress=None):
    """Train cfg.method on records; write weights + card into cfg.out; return a catalogue ModelEntry
    (None on a torchrun rank other than 0, which writes nothing)."""
    from ICHLocalizationLib.models import ModelEntry

    if not records:
        raise ValueError("no training scans: check --data")
    if cfg.method not in FAMILIES:
        raise ValueError(f"unknown method {cfg.method!r}")
    t0, training = time.time(), _training_card(records, cfg)
    trained = FAMILIES[cfg.method](records, cfg, progress)
    history = trained.history
    # each network's validation (U-Net and gate, the cascade's three planes) at its kept epoch, else its last
    metrics = {k: v for entry in sorted(history, key=lambda e: bool(e.get("kept"))) for k, v in entry.items()
               if k.startswith(("val", "gate", "axial", "coronal", "sagittal"))}
    metrics.update(trained.extra_metrics)
    # the epochs' own times, so that a run resumed from its checkpoints still reports its training time
    training["seconds"] = round(max(time.time() - t0, sum(e.get("seconds", 0.0) for e in history)), 1)
    rank, world = _dist()
    if world > 1:
        training["processes"] = world
    if rank != 0:  # every rank ends with the same weights; rank 0 writes them
        return None
    out = Path(cfg.out)
    path, card = write_model(out, trained.name, trained.state, {"training": training, "history": history,
                                                                "input": trained.input})
    entry = ModelEntry(id=trained.model_id, method=cfg.method, version=time.strftime("%Y.%m.%d"),
                       files={"weights": {"file": path.name, "sha256": card["sha256"]}}, input=trained.input,
                       params=trained.params, labels=_labels(cfg.method), training=training,
                       metrics={"validation": metrics}, default=cfg.method != "mil" or cfg.variant == "maxpool",
                       directory=out)
    (out / "entry.json").write_text(json.dumps(entry.to_json(), indent=1, default=_json_default))
    return entry


def data_source(cfg: TrainConfig) -> str:
    """'phantom', 'real' or 'real+phantom': what a model learned from (part of its catalogue id)."""
    from .datasets import split_specs

    kinds = {spec.split(":")[0].strip().lower() for data in cfg.data for spec in split_specs(data)}
    real, phantom = bool(kinds - {"phantom"}), "phantom" in kinds
    return "real+phantom" if real and phantom else "real" if real else "phantom"


def cross_validate_unet(records, cfg: TrainConfig, progress=None):
    """Patient-level K-fold cross-validation (paper 003): one U-Net per fold, Dice on its held-out fold."""
    dices = []
    for fold in range(cfg.folds):
        fcfg = replace(cfg, fold=fold, out=str(Path(cfg.out) / f"fold{fold}"))
        model, _, _, val = train_unet(records, fcfg, progress)
        dices.append(unet_dice(model, val, context_mm=cfg.context_mm))
        _log(0, f"fold {fold + 1}/{cfg.folds}: held-out Dice {dices[-1]:.3f}")
    return {"folds": cfg.folds, "dice_per_fold": [round(d, 4) for d in dices],
            "dice_mean": round(float(np.nanmean(dices)), 4), "dice_sd": round(float(np.nanstd(dices)), 4)}


# Paper 001's optimum as the starting point; ich-tune replaces it with values tuned on our data.
DEFAULT_DETECTOR = {"maxpool": {"h": 0.024, "T": 0.76, "d": 10}, "attention": {"h": 0.0038, "T": 0.024, "d": 58}}


def _labels(method):
    from ICHLocalizationLib.findings import ICH_INFO, SUBTYPE_INFO

    infos = [ICH_INFO] if method == "mil" else [SUBTYPE_INFO[s] for s in SUBTYPES]
    return [{"code": i.code, "name": i.name, "terminology": {"scheme": "SCT", "code": i.snomed, "meaning": i.snomed_meaning}}
            for i in infos]
