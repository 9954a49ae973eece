"""Dataset readers. Each gives training records with one interface (see phantom.scan_record):
patient id, axial head crop (HU) with subtype labels, per-slice subtypes, aligned cascade grid."""
from pathlib import Path


def load_dataset_records(spec: str, cache="cache", workers=2):
    """'phantom:1-120', 'ctich:DIR' (PhysioNet layout), 'rsna:DICOM_DIR,LABELS_CSV' → records."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "phantom":
        from ..cli import parse_seeds
        from .phantom import build_cache, load_records

        return load_records(build_cache(parse_seeds(arg or "1-120"), Path(cache) / "phantom", workers=workers))
    if kind == "ctich":
        from .ctich import records

        return records(arg)
    if kind == "rsna":
        from .rsna import records

        dicom_dir, _, csv_path = arg.partition(",")
        return records(dicom_dir, csv_path, Path(cache) / "rsna")
    raise ValueError(f"unknown dataset {kind!r} in --data {spec!r}; known: phantom:SEEDS, ctich:DIR, rsna:DICOM_DIR,LABELS_CSV")
