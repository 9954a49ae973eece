"""Dataset readers. Each gives training records with one interface (see phantom.scan_record):
patient id, axial head crop (HU) with subtype labels, per-slice subtypes, aligned cascade grid."""
import re
from pathlib import Path

import numpy as np

from .real import KINDS as REAL_KINDS

# what load_dataset_records reads (the Slicer module offers these)
DATASET_KINDS = ("phantom", "ctich-jpg", "phe", "ctich", "rsna")
SPEC_SEPARATOR = re.compile(r",(?=(?:" + "|".join(map(re.escape, DATASET_KINDS)) + r"):)")


def split_specs(spec: str):
    """'ctich-jpg:folds=0-3,phe:folds=0-3,phantom:1-120' → one spec per dataset."""
    return [s.strip() for s in SPEC_SEPARATOR.split(spec) if s.strip()]


def folder_spec(kind: str, folder) -> str:
    """--data for every scan of a dataset folder (the real sets' folds are all taken)."""
    return f"{kind}:dir={folder}" if kind in REAL_KINDS else f"{kind}:{folder}"


def load_dataset_records(spec: str, cache="cache", workers=2, twins=False):
    """'phantom:1-120', 'ctich:DIR' (PhysioNet layout), 'rsna:DICOM_DIR,LABELS_CSV' → records.
    twins: with each phantom its bleed-free twin (same patient id, so a split keeps them together)."""
    specs = split_specs(spec)
    if len(specs) > 1:
        return [r for one in specs for r in load_dataset_records(one, cache, workers, twins and one.startswith("phantom"))]
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind in REAL_KINDS:
        from .real import records

        return records(kind, arg, cache)
    if twins and kind != "phantom":
        raise ValueError(f"bleed-free twins exist for phantoms only, not for --data {spec!r}")
    if kind == "phantom":
        from .phantom import build_cache, load_records, parse_seeds

        seeds, folder = parse_seeds(arg or "1-120"), Path(cache) / "phantom"
        paths = build_cache(seeds, folder, workers=workers)
        if twins:
            paths += build_cache(seeds, folder, workers=workers, twins=True)
        return load_records(paths)
    if kind == "ctich":
        from .ctich import records

        return records(arg)
    if kind == "rsna":
        from .rsna import records

        dicom_dir, _, csv_path = arg.partition(",")
        return records(dicom_dir, csv_path, Path(cache) / "rsna")
    raise ValueError(f"unknown dataset {kind!r} in --data {spec!r}; known: phantom:SEEDS, ctich-jpg:folds=0-4, "
                     "phe:folds=0-4, ctich:DIR, rsna:DICOM_DIR,LABELS_CSV")


def _validation_phantoms(seeds: str):
    """The phantoms of a seed list (default 121-150), drawn one at a time; reserved seeds refused."""
    from ICHLocalizationLib.phantom import generate

    from .phantom import parse_seeds, refuse_reserved

    for seed in refuse_reserved(parse_seeds(seeds or "121-150")):
        yield generate(seed)


def box_protocol(spec: str) -> str:
    """How a dataset's boxes are matched: "3d" lesion boxes (phantoms), "2d" per slice (PHE-SICH's
    hematoma boxes; CT-ICH's subtypes per slice)."""
    kinds = {part.partition(":")[0].strip().lower() for part in split_specs(spec)}
    if kinds == {"phantom"}:
        return "3d"
    if kinds and kinds <= {"phe", "ctich-jpg"}:
        return "2d"
    raise ValueError(f"--data {spec!r}: boxes come from phantom:SEEDS (3D, every subtype) or from phe:folds=… "
                     "and ctich-jpg:folds=… (per slice), not both kinds at once")


def labelled_boxes(spec: str):
    """What the cascade's boxes are matched to, as ich-evaluate does: 'phantom:121-150' → (CTVolume,
    its truth lesions, each with "subtype" and "bbox_ras") (paper 000's protocol); 'phe:folds=0-3' →
    (CTVolume, its hematoma boxes per slice, (row0, col0, row1, col1)); 'ctich-jpg:folds=0-3' →
    (CTVolume, its subtypes per slice, a (slices, 5) bool array)."""
    protocol = box_protocol(spec)
    for part in split_specs(spec):
        kind, _, arg = part.partition(":")
        if protocol == "3d":
            for ph in _validation_phantoms(arg):
                yield ph.volume, ph.lesions
            continue
        from .real import real_scans

        for _, _, volume, truth in real_scans(kind.strip().lower(), arg):
            yield volume, (truth if kind.strip().lower() == "phe" else volume.metadata["slice_subtypes"])


def labelled_volumes(spec: str):
    """'phantom:121-150', 'ctich:DIR', 'phe:folds=…', 'ctich-jpg:folds=…' (several with commas) →
    iterator of (CTVolume, truth on its grid) for tuning steps that work on the input grid (the
    records above hold crops only), each volume's metadata["dataset"] naming its kind. truth: a bleed
    mask; for PHE-SICH (the clots in its boxes, the slices they speak for), as pseudo_masks.py makes
    them; for CT-ICH JPG its ICH per slice."""
    for part in split_specs(spec):
        kind, _, arg = part.partition(":")
        kind = kind.strip().lower()
        for volume, truth in _labelled_volumes(kind, arg, spec):
            volume.metadata["dataset"] = kind
            yield volume, truth


def _labelled_volumes(kind, arg, spec):
    if kind == "phantom":
        for ph in _validation_phantoms(arg):
            yield ph.volume, ph.mask > 0
    elif kind == "ctich":
        import SimpleITK as sitk

        from ICHLocalizationLib.io import read_volume

        from .ctich import scans

        for _, ct, mask, _ in scans(arg):
            vol = read_volume(ct, validate=False)
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(mask))) > 0 if mask is not None else np.zeros(vol.shape, bool)
            yield vol, truth
    elif kind in ("phe", "ctich-jpg"):
        from ..pseudo_masks import clots_on_grid
        from .real import real_scans

        for _, _, vol, truth in real_scans(kind, arg):
            yield vol, (clots_on_grid(vol.hu, truth) if kind == "phe" else vol.metadata["slice_subtypes"].any(axis=1))
    else:
        raise ValueError(f"--data {spec!r}: labelled volumes come from phantom:SEEDS, ctich:DIR, phe:folds=… or "
                         "ctich-jpg:folds=…")
