"""Phantom reader: draws phantom scans and caches what the trainers read (one .npz per seed).

Per scan: the axial head crop (HU, float16) with a subtype label map, per-slice subtype labels,
and the aligned cascade grid with its label map — made by the same preprocessing functions that
the methods use at inference, so training and inference read identical inputs.

A bleed-free twin (`phantom-<seed>-twin.npz`) is the same head rendered without its blood; its
record also holds `twin_of_bleed`, the slices where the original bleeds — the slices of the twin
that differ from the original (see `PhantomGenerator.generate`).
"""
import os
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np

from ICHLocalizationLib.findings import SUBTYPES
from ICHLocalizationLib.phantom import RESERVED_SEEDS, generate
from ICHLocalizationLib.preprocessing import AXIAL_CROP_SIZE, cascade_grid, estimate_alignment, head_crop, head_mask


def subtype_map(mask: np.ndarray, lesions) -> np.ndarray:
    """Lesion-id mask → subtype index map (0 background, 1..5 in SUBTYPES order)."""
    lut = np.zeros(256, np.uint8)
    for les in lesions:
        lut[les["id"]] = 1 + SUBTYPES.index(les["subtype"])
    return lut[mask]


def scan_record(volume, labels: Optional[np.ndarray], patient: str, slice_subtypes: Optional[np.ndarray] = None):
    """Everything a trainer reads of one labelled scan. labels: subtype index map on the volume grid
    (a mask, or boxes painted as masks). A scan whose subtypes are known per slice only gives
    labels None and its slice_subtypes (k, 5): the cascade grid's axial slices then carry those
    (`casc_axial_subtypes`) instead of a label map (`casc_labels`)."""
    head = head_mask(volume.hu)
    crop = head_crop(head)
    alignment = estimate_alignment(volume, head)
    label_map = np.zeros(volume.shape, np.uint8) if labels is None else labels
    if slice_subtypes is None:
        slice_subtypes = np.stack([(label_map == i + 1).any(axis=(1, 2)) for i in range(len(SUBTYPES))], axis=1)
    rec = {"patient": patient, "slice_mm": float(volume.spacing[2]),
           "crop_hu": crop.extract(volume.hu, AXIAL_CROP_SIZE).astype(np.float16),
           "crop_labels": crop.extract_labels(label_map, AXIAL_CROP_SIZE).astype(np.uint8),
           "slice_subtypes": slice_subtypes, "casc_hu": cascade_grid(volume, alignment)[0].astype(np.float16)}
    if labels is None:
        rec["casc_axial_subtypes"] = casc_axial_subtypes(volume, alignment, head, slice_subtypes)
    else:
        rec["casc_labels"] = cascade_grid(volume, alignment, array=labels, linear=False)[0].astype(np.uint8)
    return rec


def casc_axial_subtypes(volume, alignment, head, slice_subtypes):
    """(cascade axial slices, 5): which subtypes each slice of the aligned 5 mm grid holds, from
    labels known per input slice only: a grid slice holds a subtype where it cuts the head within an
    input slice labelled with it (generous by up to one slice where the grid is tilted). One nearest-
    neighbour resampling of the input slice numbers answers for all five subtypes."""
    numbers = (head * np.arange(1, len(slice_subtypes) + 1, dtype=np.uint16)[:, None, None]).astype(np.uint16)
    grid = cascade_grid(volume, alignment, array=numbers, linear=False)[0]
    labels = np.vstack([np.zeros((1, slice_subtypes.shape[1]), bool), np.asarray(slice_subtypes, bool)])
    return np.stack([labels[np.unique(s)].any(axis=0) for s in grid])


def _build_one(args):
    seed, path, original = args
    if Path(path).exists():
        return path
    import torch

    torch.set_num_threads(1)  # one scan per process
    ph = generate(seed, bleeds=original is None)
    rec = scan_record(ph.volume, subtype_map(ph.mask, ph.lesions), f"phantom-{seed}")
    if original is not None:
        with np.load(original) as z:
            rec["twin_of_bleed"] = z["slice_subtypes"].any(axis=1)
    tmp = Path(f"{path}.{os.getpid()}.tmp.npz")  # unique: torchrun ranks may build the same scan
    np.savez_compressed(tmp, **rec)
    tmp.rename(path)
    return path


def parse_seeds(text):
    """Phantom seeds: '1-100,150' → [1..100, 150]."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def refuse_reserved(seeds: Iterable[int]) -> List[int]:
    """The seeds as a list, or ValueError if any is kept for the acceptance checks."""
    seeds = list(seeds)
    reserved = [s for s in seeds if s in RESERVED_SEEDS]
    if reserved:
        raise ValueError(f"seeds {reserved} are reserved for the acceptance checks: never train or tune on them")
    return seeds


def build_cache(seeds: Iterable[int], cache_dir, workers: int = 2, progress=True, twins=False) -> List[Path]:
    """Generate and preprocess phantoms (skipping those already cached); refuses reserved seeds.
    twins: the bleed-free twins of those phantoms instead (their originals are cached first)."""
    seeds = refuse_reserved(seeds)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if twins:
        originals = build_cache(seeds, cache_dir, workers, progress)
        jobs = [(s, cache_dir / f"phantom-{s}-twin.npz", o) for s, o in zip(seeds, originals)]
    else:
        jobs = [(s, cache_dir / f"phantom-{s}.npz", None) for s in seeds]
    todo = [j for j in jobs if not j[1].exists()]  # no worker pool when everything is cached
    if workers > 1 and len(todo) > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(workers) as pool:
            list(_progress(pool.imap(_build_one, todo), len(todo), progress))
    else:
        for j in _progress(todo, len(todo), progress and bool(todo)):
            _build_one(j)
    return [j[1] for j in jobs]


def _progress(it, total, enabled):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="phantoms", unit="scan")


def load_records(paths) -> List[dict]:
    out = []
    for p in paths:
        with np.load(p) as z:
            out.append({k: z[k] for k in z.files})
            out[-1]["patient"] = str(out[-1]["patient"])
            # caches written before records carried their slice thickness: generate()'s 5 mm
            out[-1]["slice_mm"] = float(out[-1].get("slice_mm", 5.0))
    return out
