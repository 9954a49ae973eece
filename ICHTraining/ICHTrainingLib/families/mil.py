"""The MIL slice classifier (paper 001): slice labels only ('any ICH'), weighted BCE, the paper's
augmentations, 128×128 input (or, ours, the full 256 crop); on phantoms with bleed-free twins,
batches of matched pairs."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from ICHLocalizationLib.networks import MILNet
from ICHLocalizationLib.preprocessing import AXIAL_CROP_SIZE, channels_torch, crop_at

from ..augment import slice_augmentation
from ..loop import Trained, TrainConfig, data_source, fit, split_by_patient, start_from
from ..metrics import roc_auc
from ..sampling import augment_batch, record_slices, slice_batches, slice_items, stack_hu


# Paper 001's optimum as the starting point; ich-tune replaces it with values tuned on our data.
DEFAULT_DETECTOR = {"maxpool": {"h": 0.024, "T": 0.76, "d": 10}, "attention": {"h": 0.0038, "T": 0.024, "d": 58}}


def _mil_slices(record):
    """The slices of a record that MIL validation reads: all of them; of a bleed-free twin
    (datasets/phantom.py) only those where its original bleeds — the others repeat the original's."""
    if "twin_of_bleed" in record:
        return np.flatnonzero(record["twin_of_bleed"])
    return range(len(record["slice_subtypes"]))


def _paired_slice_batches(train, aug, channels, batch_size, context_mm=0.0, size=128):
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
            hu = crop_at(np.stack([record_slices(x, [k], context_mm)[0] for r, t, k in chosen for x in (r, t)]), size)
            together, _ = augment_batch(aug, list(hu.reshape(len(chosen), -1, *hu.shape[-2:])))
            half = together[0].shape[0] // 2  # each pair's slices (with their neighbours): original, then twin
            yield channels_torch(stack_hu([p[:half] for p in together] + [p[half:] for p in together]).squeeze(1),
                                 channels), y

    return batches, torch.tensor(1.0)


def mil_validation(model, records, context_mm=0.0, size=128):
    """Slice AUC and accuracy over the slices a MIL trainer reads, and `val_peak_in_bleed`: on how
    many bleed slices the likelihood map peaks in the bleed (±1 pixel of the input grid) — whether
    the network localizes what it classifies, which the slice AUC alone does not tell."""
    device = next(model.parameters()).device
    ys, ps, hits, bleeds = [], [], 0, 0
    for r in records:
        ks = np.asarray(list(_mil_slices(r)), int)
        if not len(ks):
            continue
        x = channels_torch(torch.from_numpy(crop_at(record_slices(r, ks, context_mm), size)), "mil-code").to(device)
        prob, lmap = model.likelihood(x)
        ps += prob.cpu().tolist()
        ys += r["slice_subtypes"][ks].any(axis=1).tolist()
        lab = torch.from_numpy(r["crop_labels"][ks].astype(np.float32))[:, None]
        near = F.max_pool2d(F.max_pool2d(lab, AXIAL_CROP_SIZE // size), 3, stride=1, padding=1)[:, 0] > 0  # ±1 px
        peak = lmap.flatten(1).argmax(dim=1).cpu()
        bleed = near.flatten(1).any(dim=1)
        hits += int(near.flatten(1)[torch.arange(len(ks)), peak][bleed].sum())
        bleeds += int(bleed.sum())
    acc = float(np.mean((np.array(ps) > 0.5) == np.array(ys))) if ys else math.nan
    return {"val_auc": roc_auc(ys, ps), "val_acc": acc, "val_peak_in_bleed": hits / bleeds if bleeds else math.nan}


def hardest_negatives_loss(losses, y, share):
    """Mean BCE over a batch that counts every positive and, of the negatives, only the `share` with the
    highest loss, each weighted 1/share so that the negatives keep their total weight: the gradient
    goes to the bleed-free slices the network mistakes for bleeds (online hard example mining)."""
    if share >= 1:
        return losses.mean()
    negatives = losses[y == 0]
    kept = negatives.topk(max(1, math.ceil(share * len(negatives)))).values if len(negatives) else negatives
    return (losses[y > 0].sum() + kept.sum() / share) / len(losses)


def train_mil(records, cfg: TrainConfig, progress=None):
    """Slice labels only ('any ICH'), weighted BCE, the paper's augmentations, 128×128 input; with
    bleed-free twins among the records, batches of matched pairs (_paired_slice_batches)."""
    torch.manual_seed(cfg.seed)
    train, val = split_by_patient(records, cfg.val_fraction, cfg.seed)
    aug = slice_augmentation(with_label=False, seed=cfg.seed)
    if any("twin_of_bleed" in r for r in train):
        batches, pos_weight = _paired_slice_batches(train, aug, "mil-code", cfg.batch_size, cfg.context_mm,
                                                    cfg.input_size)
    else:
        items, labels, pos_weight = slice_items(train)
        batches = slice_batches(items, labels, aug, "mil-code", cfg.batch_size, cfg.context_mm, cfg.input_size)
    model = start_from(MILNet(cfg.variant, context=bool(cfg.context_mm)), cfg)

    def loss_fn(m, x, y):
        logit, _ = m(x)
        losses = F.binary_cross_entropy_with_logits(logit, y, pos_weight=pos_weight.to(x.device), reduction="none")
        return hardest_negatives_loss(losses, y, cfg.hard_negatives)

    history = fit(model, cfg, batches, loss_fn, lambda m: mil_validation(m, val, cfg.context_mm, cfg.input_size),
                  name=f"mil-{cfg.variant}", progress=progress, select="val_auc")
    return model, history, val


def train_family(records, cfg: TrainConfig, progress=None) -> Trained:
    model, history, _ = train_mil(records, cfg, progress)
    inp = {"channels": "mil-code", "size": cfg.input_size, "crop": "head", "variant": cfg.variant}
    if cfg.context_mm:
        inp["context_mm"] = cfg.context_mm  # each slice read with its neighbours (weakly_supervised.py)
    # each slice read with four flips at two sizes (at its own only, for a 256 model), all averaged
    # (weakly_supervised.py)
    params = {"detector": dict(DEFAULT_DETECTOR[cfg.variant]), "mirror": "lr+ap",
              "read_sizes": [128, 160] if cfg.input_size == 128 else [cfg.input_size]}
    return Trained(model.state_dict(), f"mil-{cfg.variant}", f"mil-{cfg.variant}-{data_source(cfg)}", inp, params, history)
