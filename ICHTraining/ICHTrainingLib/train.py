"""`ich-train`'s entry point: train one network family (families/), then write its weights, model
card and catalogue entry. The loop they share is loop.py; adding a family is adding its module and
its line in FAMILIES."""
import json
import time
from pathlib import Path

from ICHLocalizationLib.findings import ICH_INFO, SUBTYPE_INFO, SUBTYPES
from ICHLocalizationLib.models import choose_device, file_sha256

from .families import cascade, mil, unet
from .families.cascade import cascade_planes
from .loop import TrainConfig, rank_and_world, json_default, init_file, split_by_patient, write_model


# one entry per network family: adding a family is adding its trainer here
FAMILIES = {"mil": mil.train_family, "unet": unet.train_family, "cascade": cascade.train_family}


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
    if cfg.method == "mil" and cfg.hard_negatives < 1:
        training["hard_negatives"] = cfg.hard_negatives
    if cfg.method == "mil" and cfg.input_size != 128:
        training["input_size"] = cfg.input_size
    if cfg.method == "unet" or cfg.context_mm:
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
    rank, world = rank_and_world()
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
    (out / "entry.json").write_text(json.dumps(entry.to_json(), indent=1, default=json_default))
    return entry


def _labels(method):
    infos = [ICH_INFO] if method == "mil" else [SUBTYPE_INFO[s] for s in SUBTYPES]
    return [{"code": i.code, "name": i.name, "terminology": {"scheme": "SCT", "code": i.snomed, "meaning": i.snomed_meaning}}
            for i in infos]
