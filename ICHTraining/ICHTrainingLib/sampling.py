"""Slice sampling shared by the slice classifiers (the MIL network and the U-Net's gate): every slice
with its 'any bleed' label, shuffled augmented batches of head crops, validation probabilities."""
import numpy as np
import torch

from ICHLocalizationLib.preprocessing import channels_torch, crop_at, half_crop, slices_in_context


def stack_hu(slices) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(s, np.float32) for s in slices]))


def augment_batch(aug, images, labels=None):
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


def slice_items(train):
    """Every slice of the training scans with its 'any bleed' label and the BCE positive weight."""
    items = [(r, k) for r in train for k in range(len(r["slice_subtypes"]))]
    labels = np.array([bool(r["slice_subtypes"][k].any()) for r, k in items])
    pos_weight = torch.tensor(max(1.0, (~labels).sum() / max(1, labels.sum())))
    return items, labels, pos_weight


def record_slices(record, ks, context_mm=0.0) -> np.ndarray:
    """Slices ks of a record's 256 head crop: (n, H, W), or (n, 3, H, W) with the neighbours
    context_mm above and below (2.5D)."""
    return slices_in_context(record["crop_hu"], ks, record["slice_mm"], context_mm)


def slice_batches(items, labels, aug, channels, batch_size, context_mm=0.0, size=128):
    """Shuffled batches of augmented head crops (size × size) with their slice labels; with context_mm
    each slice comes with its neighbours, all augmented alike."""
    def batches(epoch, rng):
        order = rng.permutation(len(items))
        for s in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            hu = crop_at(np.stack([record_slices(items[i][0], [items[i][1]], context_mm)[0] for i in idx]), size)
            xs, _ = augment_batch(aug, hu)
            yield channels_torch(stack_hu(xs), channels), torch.from_numpy(labels[idx].astype(np.float32))
    return batches


def validation_slices(model, records, channels, logits):
    """(labels, probabilities) of every slice of the validation scans."""
    ys, ps = [], []
    device = next(model.parameters()).device
    for r in records:
        x = channels_torch(torch.from_numpy(half_crop(r["crop_hu"])), channels).to(device)
        ps += torch.sigmoid(logits(model, x)).cpu().tolist()
        ys += r["slice_subtypes"].any(axis=1).tolist()
    return ys, ps
