"""Dataset specs of the real scans: `ctich-jpg:folds=0-3`, `phe:folds=4`, optionally `dir=FOLDER`
(default: $ICH_DATA or ../shared/data beside the repository, then ct-ich-jpg/ or phe-sich/).

Each scan comes with its fold, so a trainer can keep some folds for validation and an evaluation can
say which model saw which patient.
"""
import os
from pathlib import Path

from .folds import load_folds, parse_folds

FOLDERS = {"ctich-jpg": "ct-ich-jpg", "phe": "phe-sich"}
RECORD_VERSION = "r2"  # r2: the cascade grid and its labels
KINDS = tuple(FOLDERS)
TRUTH = {"ctich-jpg": "slices", "phe": "boxes"}  # what a record's labels are; see pseudo_masks.py


def default_data_root() -> Path:
    env = os.environ.get("ICH_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"


def parse_spec(kind: str, arg: str):
    """'folds=0-3,dir=/x' or 'folds=0,2-4' → (folder, sorted fold numbers); folds default to all five."""
    options = _options(arg)
    if options is None or set(options) - {"folds", "dir"} or (arg and not options):
        raise ValueError(f"--data {kind}:{arg}: options are folds=0-4 and dir=FOLDER, e.g. {kind}:folds=0-3")
    folder = Path(options["dir"]) if "dir" in options else default_data_root() / FOLDERS[kind]
    if not folder.is_dir():
        raise ValueError(f"--data {kind}: no dataset folder {folder}; pass dir=FOLDER or set ICH_DATA")
    return folder, parse_folds(options.get("folds", "0-4"))


def _options(arg: str):
    """'folds=0,2-4,dir=/x' → {"folds": "0,2-4", "dir": "/x"}: a part without '=' continues the value
    before it (a fold list), so no fold is dropped; None when the first part has no '='."""
    options, key = {}, None
    for part in (arg or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            options[key.strip()] = value.strip()
        elif part.strip():
            if key is None:
                return None
            options[key] += "," + part.strip()
    return options


def real_scans(kind: str, arg: str = ""):
    """Iterator of (patient, fold, CTVolume, truth): truth is the per-slice subtype sets (ctich-jpg) or
    the per-slice hematoma boxes (phe). The volume's metadata holds `slice_subtypes` (k, 5) either way."""
    from . import ctich_jpg, phe

    folder, folds = parse_spec(kind, arg)
    reader = {"ctich-jpg": ctich_jpg, "phe": phe}[kind]
    fold_of = load_folds(kind)
    extra = {"boxes": phe.read_boxes(folder)} if kind == "phe" else {}
    for patient in reader.patients(folder):
        fold = fold_of.get(patient)
        if fold is None:
            raise ValueError(f"{kind}: patient {patient} has no fold in folds.json; rerun scripts/make_folds.py")
        if fold in folds:
            volume, truth = reader.read_scan(folder, patient, **extra)
            yield patient, fold, volume, truth


def records(kind: str, arg: str, cache="cache"):
    """Training records (see phantom.scan_record) of the real scans, cached one .npz per scan.

    Slice labels only: `crop_labels` holds PHE's hematoma boxes (for the MIL's peak-in-box check),
    nothing for CT-ICH; `truth` tells the trainers which ("boxes", "slices"; a phantom's is a blood
    mask, "mask", the default). The cascade grid comes with what is known on it: PHE's boxes as
    `casc_labels` (slice labels in all three planes), CT-ICH's per-slice subtypes as
    `casc_axial_subtypes` (axial slices only)."""
    import numpy as np

    folder = Path(cache) / "real"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for patient, fold, volume, truth in real_scans(kind, arg):
        path = folder / f"{kind}-{patient}.{RECORD_VERSION}.npz"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # unique: torchrun ranks may build the same scan
            np.savez_compressed(tmp, **_record(kind, patient, volume, truth))
            tmp.rename(path)
        with np.load(path) as z:
            out.append({**{k: z[k] for k in z.files}, "patient": f"{kind}-{patient}", "fold": fold,
                        "truth": TRUTH[kind]})
    return out


def _record(kind, patient, volume, truth):
    """The trainers' record (phantom.scan_record, the same preprocessing): PHE's boxes painted as IPH
    label maps; CT-ICH's subtypes per slice only."""
    from ..pseudo_masks import paint_boxes
    from .phantom import scan_record

    subtypes = volume.metadata["slice_subtypes"]
    if kind != "phe":
        return scan_record(volume, None, patient, subtypes)
    return scan_record(volume, paint_boxes(volume.shape, truth, label=1), patient, subtypes)  # 1: IPH
