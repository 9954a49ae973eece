"""Shared fixtures: paths to ../shared/data, small phantoms, a slicer-core scene."""
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ICH_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(*parts):
    """A path under ../shared/data, or a skip with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present: {path} (tests read ../shared/data when it is there)")
    return path


@pytest.fixture(scope="session")
def small_phantom():
    """A 256×256×32 phantom with three subtypes (fast to generate)."""
    from ICHLocalizationLib.phantom import generate

    return generate(101, subtypes=["IPH", "SDH", "IVH"], size=256)


@pytest.fixture(scope="session")
def sample_phantom():
    """A full-size 512×512×32 phantom as the checks and the demo use it."""
    from ICHLocalizationLib.phantom import generate

    return generate(202, subtypes=["IPH", "SDH", "EDH"])


@pytest.fixture(scope="session")
def phe_fold0_records(tmp_path_factory):
    """The training records of PHE-SICH's fold 0 (14 scans), built once into a fresh cache."""
    shared("phe-sich")
    from ICHTrainingLib.datasets import load_dataset_records

    return load_dataset_records("phe:folds=0", cache=tmp_path_factory.mktemp("real-cache"))


@pytest.fixture(scope="session")
def untrained_models(tmp_path_factory):
    """A catalogue of randomly initialised networks: exercises every code path without the bundled weights."""
    import torch

    from ICHLocalizationLib.methods.cascade3d import NETS, PLANES
    from ICHLocalizationLib.models import Catalogue, ModelEntry, file_sha256
    from ICHLocalizationLib.networks import MILNet, SliceClassifier, build_unet
    from ICHLocalizationLib.networks.classifier import ClassifierBank

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models")
    states = {"mil": MILNet().state_dict(), "unet": {"unet": build_unet().state_dict(), "gate": SliceClassifier().state_dict()},
              "cascade": {p: ClassifierBank(NETS).state_dict() for p in PLANES}}
    params = {"mil": {"detector": {"h": 0.0, "T": 0.5, "d": 10}},
              "unet": {"threshold": 0.5, "gate_threshold": 0.0, "closing_mm": 4.0, "opening_mm": 2.0, "min_volume_ml": 0.0},
              "cascade": {"fusion": {"kernel": [0.25, 0.5, 0.25], "threshold": 0.0}, "stage1_threshold": 0.0}}
    entries = []
    for m, state in states.items():
        torch.save(state, d / f"{m}.pt")
        entries.append(ModelEntry(id=f"{m}-untrained", method=m, version="0", default=True, directory=d,
                                  files={"weights": {"file": f"{m}.pt", "sha256": file_sha256(d / f"{m}.pt")}},
                                  input={"variant": "maxpool", "size": 128}, params=params[m]))
    Catalogue(entries, d).save()
    return d


@pytest.fixture()
def scene():
    from ICHLocalizationLib import headless

    return headless.scene()


def oblique_volume(shape=(12, 40, 48), spacing=(0.7, 0.9, 2.5), angles=(12.0, -7.0, 20.0), seed=0):
    """A CTVolume with a rotated, non-isotropic grid and random HU, for geometry round trips."""
    from ICHLocalizationLib.preprocessing import rotation_matrix
    from ICHLocalizationLib.volume import CTVolume

    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 1500, size=shape).astype(np.float32)
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(*angles) @ np.diag(spacing)
    m[:3, 3] = [-31.5, 12.25, -40.0]
    return CTVolume(hu, m, name="oblique")
