"""The U-Net segmenter (papers 002, 003): 2D U-Net on bleed-centred and random patches with BCE +
Dice, and its slice gate; the gate alone can also learn from slice labels (`--gate-only`)."""
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ICHLocalizationLib.findings import SUBTYPES
from ICHLocalizationLib.models import file_sha256
from ICHLocalizationLib.networks import SliceClassifier, build_unet
from ICHLocalizationLib.preprocessing import channels_torch, neighbour_offset, slices_in_context, with_neighbours

from ..augment import slice_augmentation
from ..loop import Trained, TrainConfig, log_rank0, data_source, fit, init_file, split_by_patient, start_from
from ..metrics import roc_auc, slice_dices
from ..pseudo_masks import pixel_supervision
from ..sampling import augment_batch, slice_batches, slice_items, stack_hu, validation_slices


UNET_PATCH = 128


def unet_patch_index(records):
    """Where _unet_patches draws from: every bleed slice, the slices holding each subtype (on the
    crop the U-Net reads), every slice whose mask is the whole truth (records of pixel_supervision)."""
    pos_slices, by_subtype = [], {s: [] for s in range(1, len(SUBTYPES) + 1)}
    for r in records:
        for k in np.nonzero(r["crop_labels"].any(axis=(1, 2)))[0]:
            pos_slices.append((r, k))
            for s in np.unique(r["crop_labels"][k]):
                if s:
                    by_subtype[int(s)].append((r, k))
    all_slices = [(r, k) for r in records for k in np.nonzero(r["labelled_slices"])[0]]
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
    xs, ys = augment_batch(aug, imgs, labs)
    return channels_torch(stack_hu(xs), "unet"), torch.from_numpy(np.round(np.stack(ys)).astype(np.int64))


def train_unet(records, cfg: TrainConfig, progress=None, patches_per_epoch=2400):
    """BCE + Dice (MONAI DiceCELoss over the 6 classes) on 128×128 patches of the 256 head crop, of
    records made by pseudo_masks.pixel_supervision."""
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
        pos = np.nonzero(r["crop_labels"].any(axis=(1, 2)))[0]  # a mask, or a PHE box's clot (pixel_supervision)
        if not len(pos):
            continue
        hu = slices_in_context(r["crop_hu"], pos, r["slice_mm"], context_mm).astype(np.float32)
        x = channels_torch(torch.from_numpy(hu), "unet").to(device)
        prob = 1 - torch.softmax(model(x), dim=1)[:, 0].cpu().numpy()
        dices += slice_dices(prob >= threshold, r["crop_labels"][pos] > 0)
    return float(np.mean(dices)) if dices else math.nan


def train_gate(records, cfg: TrainConfig, progress=None):
    """The light slice classifier that gates the U-Net (paper 002), on the 128 head crop."""
    gcfg = TrainConfig(**{**asdict(cfg), "epochs": max(2, cfg.epochs // 2)})
    train, val = split_by_patient(records, cfg.val_fraction, cfg.seed, cfg.fold, cfg.folds)
    items, labels, pos_weight = slice_items(train)
    batches = slice_batches(items, labels, slice_augmentation(with_label=False, seed=cfg.seed + 1), "unet", cfg.batch_size)
    model = start_from(SliceClassifier(), gcfg, "gate")

    def loss_fn(m, x, y):
        return F.binary_cross_entropy_with_logits(m(x), y, pos_weight=pos_weight.to(x.device))

    def validate(m):
        return {"gate_val_auc": roc_auc(*validation_slices(m, val, "unet", lambda net, x: net(x)))}

    return model, fit(model, gcfg, batches, loss_fn, validate, name="unet-gate", progress=progress, select="gate_val_auc")


def cross_validate_unet(records, cfg: TrainConfig, progress=None):
    """Patient-level K-fold cross-validation (paper 003): one U-Net per fold, Dice on its held-out fold."""
    dices = []
    for fold in range(cfg.folds):
        fcfg = replace(cfg, fold=fold, out=str(Path(cfg.out) / f"fold{fold}"))
        model, _, _, val = train_unet(records, fcfg, progress)
        dices.append(unet_dice(model, val, context_mm=cfg.context_mm))
        log_rank0(0, f"fold {fold + 1}/{cfg.folds}: held-out Dice {dices[-1]:.3f}")
    return {"folds": cfg.folds, "dice_per_fold": [round(d, 4) for d in dices],
            "dice_mean": round(float(np.nanmean(dices)), 4), "dice_sd": round(float(np.nanstd(dices)), 4)}


def train_family(records, cfg: TrainConfig, progress=None) -> Trained:
    if cfg.gate_only:
        return train_gate_only(records, cfg, progress)
    records = [pixel_supervision(r) for r in records]
    if not any(r["crop_labels"].any() for r in records):
        raise ValueError("unet learns from blood: none of these scans has a mask or a box with a clot in it; "
                         "add phantoms or PHE-SICH to --data (slice labels alone train the gate: --gate-only)")
    cv = cross_validate_unet(records, cfg, progress) if cfg.folds > 1 else None
    model, gate, history, _ = train_unet(records, replace(cfg, folds=1), progress)
    inp, params = _settings_from_init(cfg)
    if any(r.get("truth", "mask") != "mask" for r in records):
        params["slice_score"] = "gate_x_evidence"
    return Trained({"unet": model.state_dict(), "gate": gate.state_dict()}, "unet", f"unet-{data_source(cfg)}", inp,
                   params, history, {"cross_validation": cv} if cv else {})


def _settings_from_init(cfg: TrainConfig):
    """(input, post-processing) of the catalogue entry that --init names (tuned settings carry over),
    else the untuned defaults; --context-mm decides the input's context."""
    base = catalogue_entry_of(init_file(cfg)) if cfg.init else None
    inp = dict(base.input) if base else {"channels": "unet", "size": 256, "gate_size": 128, "crop": "head"}
    if cfg.context_mm:
        inp["context_mm"] = cfg.context_mm
    params = dict(base.params) if base else {"threshold": 0.5, "gate_threshold": 0.5, "closing_mm": 4.0,
                                              "opening_mm": 2.0, "min_volume_ml": 0.05, "mirror": True}
    return inp, params


def train_gate_only(records, cfg: TrainConfig, progress=None) -> Trained:
    """A new slice gate for the U-Net of cfg.init, learnt from slice labels (real scans included); the
    U-Net, its input and its tuned post-processing come from the catalogue entry of that file when
    there is one. The slice score becomes the gate's probability times the U-Net's evidence."""
    if not cfg.init:
        raise ValueError("--gate-only keeps the U-Net of --init: give --init with a U-Net model")
    inp, params = _settings_from_init(cfg)
    unet = start_from(build_unet(context=bool(inp.get("context_mm"))), cfg, "unet")
    gate, history = train_gate(records, cfg, progress)
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
