"""The three-plane cascade (paper 000): per plane a bank of six binary slice classifiers ('ich', then
one per subtype on bleed slices), each plane learning from the records labelled in it."""
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ICHLocalizationLib.findings import SUBTYPES
from ICHLocalizationLib.methods.cascade3d import PLANES, context_offset, plane_bank, plane_input, plane_slices
from ICHLocalizationLib.preprocessing import channels_torch, with_neighbours

from ..augment import slice_augmentation
from ..loop import Trained, TrainConfig, data_source, fit, split_by_patient, start_from
from ..metrics import roc_auc
from ..sampling import augment_batch, stack_hu


CASCADE_FUSION = {"kernel": [0.25, 0.5, 0.25], "threshold": 0.5}


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
            xs, _ = augment_batch(aug, [read(i, rng) for i in idx])
            yield channels_torch(stack_hu(xs), "paper000"), torch.from_numpy(labs[idx])
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


def train_family(records, cfg: TrainConfig, progress=None) -> Trained:
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
