"""Trainers on small phantoms: every method trains, checkpoints, resumes and registers; detector
tuning; dataset splits by patient. Long runs are marked slow (torchrun: test_distributed.py)."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ICHLocalizationLib.models import Catalogue, load_state
from ICHTrainingLib.loop import TrainConfig, _inflate_to_neighbours, split_by_patient
from ICHTrainingLib.train import run_training


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Four small phantoms (192×192×16: enough to exercise the trainers) as cached training records."""
    from ICHLocalizationLib.phantom import generate
    from ICHTrainingLib.datasets.phantom import load_records, scan_record, subtype_map

    cache = tmp_path_factory.mktemp("cache")
    paths = []
    for seed in (501, 502, 503, 504):
        ph = generate(seed, subtypes=["IPH", "SDH"] if seed % 2 else ["IVH"], size=192, slices=16)
        paths.append(cache / f"phantom-{seed}.npz")
        np.savez_compressed(paths[-1], **scan_record(ph.volume, subtype_map(ph.mask, ph.lesions), f"phantom-{seed}"))
    return load_records(paths)


def test_split_is_by_patient(records):
    train, val = split_by_patient(records + records, 0.25, seed=0)
    assert {r["patient"] for r in train}.isdisjoint({r["patient"] for r in val})
    folds = [split_by_patient(records, folds=2, fold=f)[1] for f in range(2)]
    assert sorted(r["patient"] for f in folds for r in f) == sorted(r["patient"] for r in records)


@pytest.mark.parametrize("method", ["mil", "unet", "cascade"])
def test_short_training_run_checkpoints_resumes_and_registers(records, tmp_path, method):
    from ICHTrainingLib.cli import register

    cfg = TrainConfig(method=method, out=str(tmp_path / "run"), epochs=1, batch_size=4, max_batches=2,
                      data=["phantom:501-504"], command=f"ich-train {method} (test)", val_fraction=0.25)
    entry = run_training(records, cfg)
    ckpts = list((tmp_path / "run").glob("*.checkpoint.pt"))
    assert ckpts and (tmp_path / "run" / "entry.json").exists()
    # resume: a second run with one more epoch starts from the checkpoint
    cfg.epochs = 2
    entry = run_training(records, cfg)
    hist = json.loads(next((tmp_path / "run").glob("*.card.json")).read_text())["history"]
    assert [h["epoch"] for h in hist if "gate" not in json.dumps(h)][:2] == [0, 1]
    register(tmp_path / "cat", entry, tmp_path / "run")
    cat = Catalogue.load(tmp_path / "cat")
    got = cat.get(method)
    assert got.training["command"].startswith("ich-train") and load_state(got)


def test_a_training_run_repeats_exactly_with_its_seed(records, tmp_path):
    """The same command twice gives the same weights (windowed exports included); another seed does not."""
    import hashlib

    def weights(name, seed):
        cfg = TrainConfig(method="mil", out=str(tmp_path / name), epochs=1, batch_size=4, max_batches=3,
                          val_fraction=0.25, seed=seed)
        run_training(records, cfg)
        return hashlib.sha256((tmp_path / name / "mil-maxpool.pt").read_bytes()).hexdigest()

    first = weights("a", 0)
    assert weights("b", 0) == first
    assert weights("c", 1) != first


def test_train_command_passes_seed_batch_dice_and_hard_negatives_to_the_run_and_its_card(records, tmp_path, monkeypatch):
    """`ich-train --seed N --batch-dice` (and the MIL's --hard-negatives) reach the run (weights,
    validation patients and batches follow the seed) and its card."""
    from dataclasses import replace

    from ICHTrainingLib import cli, train

    seen = {}

    def short_run(recs, cfg):
        seen["cfg"] = cfg
        return run_training(recs, replace(cfg, max_batches=1, batch_size=4, val_fraction=0.25))

    monkeypatch.setattr(cli, "load_training_records", lambda *a: records)
    monkeypatch.setattr(train, "run_training", short_run)
    args = ["unet", "--seed", "3", "--batch-dice", "--epochs", "1", "--out", str(tmp_path / "s3")]
    assert cli.train_main(args) == 0
    assert seen["cfg"].seed == 3 and seen["cfg"].batch_dice
    card = json.loads((tmp_path / "s3" / "unet.card.json").read_text())["training"]
    assert card["seed"] == 3 and card["batch_dice"] is True and card["command"] == "ich-train " + " ".join(args)
    val_patients = [[r["patient"] for r in split_by_patient(records, 0.25, seed=k)[1]] for k in (0, 3)]
    assert val_patients[0] != val_patients[1]
    args = ["mil", "--hard-negatives", "0.25", "--epochs", "1", "--out", str(tmp_path / "hn")]
    assert cli.train_main(args) == 0 and seen["cfg"].hard_negatives == 0.25
    assert json.loads((tmp_path / "hn" / "mil-maxpool.card.json").read_text())["training"]["hard_negatives"] == 0.25


@pytest.mark.parametrize("constant", [False, True])
def test_step_decay_or_a_constant_learning_rate(tmp_path, constant):
    """By default the rate drops ×0.1 after 2/3 of the epochs; `--constant-lr` keeps it."""
    import torch

    from ICHTrainingLib.loop import fit

    model = torch.nn.Linear(2, 1)
    cfg = TrainConfig(method="mil", out=str(tmp_path), epochs=3, lr=1e-3, constant_lr=constant)
    batches = lambda epoch, rng: iter([(torch.ones(4, 2), torch.ones(4, 1))])  # noqa: E731
    fit(model, cfg, batches, lambda m, x, y: ((m(x) - y) ** 2).mean(), lambda m: {}, name="toy")
    state = torch.load(tmp_path / "toy.checkpoint.pt", weights_only=True)
    lr = state["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-3 if constant else 1e-4)


def test_fine_tuning_starts_from_the_given_weights(records, tmp_path):
    """--init: a run at learning rate 0 hands back exactly the weights it started from (batch-norm
    statistics aside), and its card names them by sha256; a file of another method is refused."""
    import torch

    from ICHLocalizationLib.models import file_sha256

    first = run_training(records, TrainConfig(method="unet", out=str(tmp_path / "a"), epochs=1, batch_size=4, max_batches=1))
    init = tmp_path / "a" / first.files["weights"]["file"]
    cfg = TrainConfig(method="unet", out=str(tmp_path / "b"), epochs=1, batch_size=4, max_batches=1, lr=0.0, init=str(init))
    second = run_training(records, cfg)
    a = torch.load(init, weights_only=True)
    b = torch.load(tmp_path / "b" / second.files["weights"]["file"], weights_only=True)
    for net in ("unet", "gate"):
        learned = [k for k in a[net] if "running_" not in k and "num_batches" not in k]
        assert learned and all(torch.equal(a[net][k], b[net][k]) for k in learned), net
    assert second.training["init"]["sha256"] == file_sha256(init)
    mil = run_training(records, TrainConfig(method="mil", out=str(tmp_path / "m"), epochs=1, batch_size=4, max_batches=1))
    mil_file = str(tmp_path / "m" / mil.files["weights"]["file"])
    with pytest.raises(ValueError, match="--init .*has no 'unet' weights"):
        run_training(records, TrainConfig(method="unet", out=str(tmp_path / "c"), epochs=1, max_batches=1, init=mil_file))
    with pytest.raises(ValueError, match="--init .*do not fit this mil network .*Missing key"):
        run_training(records, TrainConfig(method="mil", variant="attention", out=str(tmp_path / "e"), epochs=1,
                                          max_batches=1, init=mil_file))
    with pytest.raises(ValueError, match="no such weights file"):
        run_training(records, TrainConfig(method="unet", out=str(tmp_path / "d"), init=str(tmp_path / "missing.pt")))


def test_augmentation_repeats_with_its_seed_windowed_exports_included():
    """Two pipelines with one seed augment a slice sequence identically, including which slices are
    clipped to the brain window, so a training command gives the same model when run again."""
    from ICHTrainingLib.augment import slice_augmentation

    img = np.linspace(-1000, 1500, 64 * 64, dtype=np.float32).reshape(1, 64, 64)

    def run(seed):
        aug = slice_augmentation(with_label=False, seed=seed, p_windowed=0.5)
        return [np.asarray(aug({"image": img})["image"]) for _ in range(20)]

    first, again, other = run(0), run(0), run(1)
    windowed = [float(x.min()) >= 0.0 for x in first]
    assert 0 < sum(windowed) < 20  # some slices clipped to the window, some not
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert windowed != [float(x.min()) >= 0.0 for x in other]


def test_sagittal_slices_are_never_turned_upside_down():
    """The mirror flips the left-right axis; a sagittal slice has none, so its augmentation keeps the
    vertex at the top (a flip of its first axis would show the head upside down)."""
    from ICHTrainingLib.augment import slice_augmentation

    img = np.zeros((40, 128), np.float32)
    img[:20] = 60.0  # upper half bright, lower half dark

    def upside_down(spatial_axis_lr, seed):
        aug = slice_augmentation(with_label=False, seed=seed, rotate_deg=10.0, spatial_axis_lr=spatial_axis_lr,
                                 p_windowed=0.0)
        out = np.asarray(aug({"image": img[None]})["image"])[0]
        return out[:20].mean() < out[20:].mean()

    assert not any(upside_down(None, s) for s in range(40))
    assert any(upside_down(0, s) for s in range(40))  # the check itself can see a flip


def test_unet_subtype_balanced_patches(records):
    """balance='subtype': each subtype is the target of about a third of the bleed patches here
    (three subtypes: IPH and SDH in two scans, IVH in two), whatever its pixel count."""
    from ICHTrainingLib.families.unet import _unet_patches, unet_patch_index
    from ICHTrainingLib.pseudo_masks import pixel_supervision

    index = unet_patch_index([pixel_supervision(r) for r in records])
    assert [s for s, _ in index[1]] == [1, 2, 4]  # IPH, IVH, SDH
    rng = np.random.default_rng(0)
    _, y = _unet_patches(index, 600, rng, lambda d: d, balance="subtype")
    bleed = y[np.arange(600) % 3 != 2].numpy()
    share = {s: float(np.mean([(p == s).any() for p in bleed])) for s in (1, 2, 4)}
    assert all(0.25 < v for v in share.values()), share
    _, y = _unet_patches(index, 600, np.random.default_rng(0), lambda d: d, balance="slice")
    assert (y[np.arange(600) % 3 != 2] > 0).flatten(1).any(1).all(), "every bleed patch holds bleed"


def test_a_one_slice_unet_starts_a_25d_one_that_reads_its_neighbours(records, tmp_path):
    """--context-mm with --init of a one-slice U-Net: the 9-channel network starts as the 3-channel
    one (same output whatever the neighbours hold); its patches carry the slices above and below; the
    trained model's card and catalogue input say so, and the method runs it on a scan."""
    import torch

    from ICHLocalizationLib.methods import get_method_class
    from ICHLocalizationLib.networks import build_unet
    from ICHLocalizationLib.phantom import generate
    from ICHLocalizationLib.preprocessing import PreparedScan, channels_torch
    from ICHTrainingLib.families.unet import _unet_patches, unet_patch_index
    from ICHTrainingLib.loop import _inflate_to_neighbours
    from ICHTrainingLib.pseudo_masks import pixel_supervision

    torch.manual_seed(0)
    one, nine = build_unet().eval(), build_unet(context=True).eval()
    nine.load_state_dict(_inflate_to_neighbours(one.state_dict(), nine.state_dict()))
    hu = torch.from_numpy(records[0]["crop_hu"][4:7, :128, :128].astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(one(channels_torch(hu[1:2], "unet")), nine(channels_torch(hu[None], "unet")), atol=1e-5)

    index = unet_patch_index([pixel_supervision(r) for r in records])
    x, _ = _unet_patches(index, 12, np.random.default_rng(0), lambda d: d, context_mm=5.0, p_single=0.0)
    assert x.shape == (12, 9, 128, 128) and not torch.equal(x[:, 0:3], x[:, 3:6])
    x, _ = _unet_patches(index, 12, np.random.default_rng(0), lambda d: d, context_mm=5.0, p_single=1.0)
    assert torch.equal(x[:, 0:3], x[:, 3:6]) and torch.equal(x[:, 6:9], x[:, 3:6])

    first = run_training(records, TrainConfig(method="unet", out=str(tmp_path / "a"), epochs=1, batch_size=4, max_batches=1))
    entry = run_training(records, TrainConfig(method="unet", out=str(tmp_path / "b"), epochs=1, batch_size=4,
                                              max_batches=1, context_mm=5.0,
                                              init=str(tmp_path / "a" / first.files["weights"]["file"])))
    assert entry.input["context_mm"] == 5.0 and entry.training["context_mm"] == 5.0
    state = load_state(entry)
    assert state["unet"]["model.0.conv.weight"].shape[1] == 9
    method = get_method_class("unet")(entry, state, device="cpu")
    ph = generate(505, subtypes=["IPH"], size=192, slices=16)
    maps = method.probabilities(PreparedScan(ph.volume))
    assert maps.fg.shape == (16, 256, 256) and np.isfinite(maps.fg).all() and 0 <= maps.fg.min() <= maps.fg.max() <= 1


@pytest.fixture(scope="module")
def twin(records, tmp_path_factory):
    """The bleed-free twin of records[1] (seed 502: an IVH, with bleed-free slices above and below)."""
    from ICHLocalizationLib.phantom import generate
    from ICHTrainingLib.datasets.phantom import load_records, scan_record, subtype_map

    ph = generate(502, bleeds=False, subtypes=["IVH"], size=192, slices=16)
    rec = scan_record(ph.volume, subtype_map(ph.mask, ph.lesions), records[1]["patient"])
    rec["twin_of_bleed"] = records[1]["slice_subtypes"].any(axis=1)
    path = tmp_path_factory.mktemp("twin") / "twin.npz"
    np.savez_compressed(path, **rec)
    return load_records([path])[0]


def test_mil_pairs_every_bleed_slice_with_its_twin_once(records, twin):
    """Training: one pair per bleed slice and epoch; validation reads the twin only where its original
    bleeds (its other slices repeat the original's). The twin shares the original's patient id, so no
    split puts the pair on both sides."""
    from ICHTrainingLib.augment import slice_augmentation
    from ICHTrainingLib.families.mil import _mil_slices, _paired_slice_batches

    original = records[1]
    bleed = np.flatnonzero(original["slice_subtypes"].any(axis=1))
    assert 0 < len(bleed) < len(original["slice_subtypes"])
    assert list(_mil_slices(twin)) == list(bleed) and not twin["slice_subtypes"].any()
    batches, _ = _paired_slice_batches([original, twin], slice_augmentation(False, seed=0), "mil-code", 2)
    assert len(list(batches(0, np.random.default_rng(0)))) == len(bleed)
    for seed in range(5):
        train, val = split_by_patient(records + [twin], 0.25, seed=seed)
        assert any(r is twin for r in train) == any(r is original for r in train)


def test_paired_batches_show_a_bleed_slice_and_its_twin_augmented_alike(records, twin):
    """Batches hold pairs only; within a pair only the blood differs (one affine, one intensity change
    for both), while two bleed slices of the same head differ widely once augmented apart."""
    from ICHTrainingLib.augment import slice_augmentation
    from ICHTrainingLib.families.mil import _paired_slice_batches

    batches, pos_weight = _paired_slice_batches([records[1], twin, records[2]], slice_augmentation(False, seed=3),
                                                "mil-code", 4)
    x, y = next(batches(0, np.random.default_rng(0)))
    assert y.tolist() == [1, 1, 0, 0] and float(pos_weight) == 1.0
    brain = x[:, 1]  # brain window, 0–1
    within_pair = (brain[0] - brain[2]).abs().gt(0.1).float().mean()
    apart = (brain[0] - brain[1]).abs().gt(0.1).float().mean()
    assert 0 < within_pair < 0.05 and apart > 4 * within_pair


def test_detector_tuning_improves_on_a_bad_start(records, tmp_path):
    from ICHTrainingLib.tune_detector import detector_dice, tune, validation_maps

    cfg = TrainConfig(method="mil", out=str(tmp_path / "mil"), epochs=1, batch_size=4, max_batches=3, val_fraction=0.25)
    entry = run_training(records, cfg)
    entry.params["detector"] = {"h": 0.9, "T": 0.99, "d": 60}
    slices = validation_maps(entry, records)
    start = detector_dice(slices, 0.9, 0.99, 60)["dice"]
    best = tune(entry, records, init_points=3, n_iter=4)
    assert best["dice"] >= start
    assert 0 <= best["h"] <= 1 and 0 <= best["T"] <= 1 and 1 <= best["d"] <= 60


@pytest.mark.slow
def test_full_mil_training_learns(records, tmp_path):
    """Slow: several epochs reach a useful slice AUC on held-out phantoms."""
    cfg = TrainConfig(method="mil", out=str(tmp_path / "mil"), epochs=4, batch_size=8, val_fraction=0.25)
    run_training(records * 3, cfg)
    hist = json.loads((tmp_path / "mil" / "mil-maxpool.card.json").read_text())["history"]
    assert hist[-1]["val_auc"] > 0.8


def test_epoch_lines_parse_for_the_live_plot():
    from ICHTrainingLib.loop import parse_epoch_line

    e = parse_epoch_line("unet epoch 3/12: loss 0.5123, seconds 50.5, val_dice 0.6909")
    assert e["epoch"] == 3 and e["epochs"] == 12 and e["loss"] == 0.5123 and e["metrics"]["val_dice"] == 0.6909
    assert parse_epoch_line("phantoms: 10%") is None


def test_unet_k_fold_cross_validation(records, tmp_path):
    cfg = TrainConfig(method="unet", out=str(tmp_path / "cv"), epochs=1, batch_size=4, max_batches=1, folds=2)
    entry = run_training(records, cfg)
    cv = entry.metrics["validation"]["cross_validation"]
    assert cv["folds"] == 2 and len(cv["dice_per_fold"]) == 2
    assert (tmp_path / "cv" / "fold0").is_dir() and (tmp_path / "cv" / "fold1").is_dir()


def test_cascade_trains_the_named_planes_and_keeps_the_others(records, tmp_path):
    """--planes axial retrains the axial bank only: coronal and sagittal weights stay those of --init."""
    import torch

    first = run_training(records, TrainConfig(method="cascade", out=str(tmp_path / "a"), epochs=1, batch_size=4,
                                              max_batches=1, val_fraction=0.25))
    init = str(tmp_path / "a" / first.files["weights"]["file"])
    cfg = TrainConfig(method="cascade", out=str(tmp_path / "b"), epochs=1, batch_size=4, max_batches=2, seed=1,
                      val_fraction=0.25, init=init, planes=["axial"])
    second = run_training(records, cfg)
    before = torch.load(init, weights_only=True)
    after = torch.load(tmp_path / "b" / second.files["weights"]["file"], weights_only=True)
    for plane in ("coronal", "sagittal"):
        assert all(torch.equal(before[plane][k], after[plane][k]) for k in before[plane])
    assert any(not torch.equal(before["axial"][k], after["axial"][k]) for k in before["axial"])
    assert second.training["planes"] == ["axial"]
    assert {"coronal_ich_auc", "sagittal_ich_auc", "axial_ich_auc"} <= set(second.metrics["validation"])
    with pytest.raises(ValueError, match="--init"):
        run_training(records, TrainConfig(method="cascade", out=str(tmp_path / "c"), planes=["axial"]))
    with pytest.raises(ValueError, match="transverse"):
        run_training(records, TrainConfig(method="cascade", out=str(tmp_path / "d"), init=init, planes=["transverse"]))


def test_slice_labelled_real_records_teach_the_axial_nets_only(records, tmp_path):
    """A CT-ICH-like record (per-slice subtypes on the cascade grid, no label map) joins the axial
    plane's training and validation and no other; the U-Net refuses records without any blood."""
    from ICHTrainingLib.families.cascade import plane_items, plane_labels, record_plane_labels

    sliced = dict(records[0], patient="ctich-1", truth="slices")
    sliced["casc_axial_subtypes"] = plane_labels(sliced.pop("casc_labels"), "axial")[:, 1:]
    assert np.array_equal(record_plane_labels(sliced, "axial"), plane_labels(records[0]["casc_labels"], "axial"))
    assert record_plane_labels(sliced, "coronal") is None
    count = lambda recs, plane: len(plane_items(recs, plane)[0])  # noqa: E731
    assert count([sliced, records[1]], "axial") == count([sliced], "axial") + count([records[1]], "axial")
    assert count([sliced], "axial") > 0 and count([sliced], "coronal") == 0
    assert count([sliced, records[1]], "coronal") == count([records[1]], "coronal")
    mixed = [sliced, *records[1:]]
    entry = run_training(mixed, TrainConfig(method="cascade", out=str(tmp_path / "c"), epochs=1, batch_size=4,
                                            max_batches=1, val_fraction=0.25))
    assert {"axial_ich_auc", "coronal_ich_auc"} <= set(entry.metrics["validation"])
    with pytest.raises(ValueError, match="unet learns from blood: none of these scans"):
        run_training([sliced], TrainConfig(method="unet", out=str(tmp_path / "u")))


def test_unet_gate_only_learns_from_slice_labels_and_keeps_the_unet(records, tmp_path):
    """--gate-only: a new gate from slice-labelled records, the U-Net bit-identical to --init's, and
    the slice score weighted by the gate."""
    import torch

    first = run_training(records, TrainConfig(method="unet", out=str(tmp_path / "a"), epochs=1, batch_size=4,
                                              max_batches=1, val_fraction=0.25))
    init = str(tmp_path / "a" / first.files["weights"]["file"])
    sliced = [dict(r, truth="slices", patient=f"real-{n}") for n, r in enumerate(records)]
    entry = run_training(sliced, TrainConfig(method="unet", out=str(tmp_path / "b"), epochs=2, batch_size=4,
                                             max_batches=2, val_fraction=0.25, init=init, gate_only=True, seed=1))
    before = torch.load(init, weights_only=True)
    after = torch.load(tmp_path / "b" / entry.files["weights"]["file"], weights_only=True)
    assert all(torch.equal(before["unet"][k], after["unet"][k]) for k in before["unet"])
    assert any(not torch.equal(before["gate"][k], after["gate"][k]) for k in before["gate"])
    assert entry.params["slice_score"] == "gate_x_evidence" and entry.training["gate_only"] is True
    assert "gate_val_auc" in entry.metrics["validation"]
    with pytest.raises(ValueError, match="give --init"):
        run_training(sliced, TrainConfig(method="unet", out=str(tmp_path / "c"), gate_only=True))


def test_ich_train_planes_option_is_checked_before_training(records, tmp_path, monkeypatch, capsys):
    """`--planes` is the cascade's: for another method, without --init, or with an unknown plane the
    command exits 2 with one line saying what to do, and nothing is written."""
    from ICHTrainingLib import cli

    bundled_cascade = Path(__file__).resolve().parents[1] / "ICHLocalization" / "Resources" / "Models" / "cascade.pt"
    monkeypatch.setattr(cli, "load_training_records", lambda *a: records)
    cases = [(["mil", "--planes", "axial"], "is for the cascade"),
             (["cascade", "--gate-only"], "is for the U-Net"),
             (["cascade", "--planes", "axial, coronal"], "give --init"),
             (["cascade", "--planes", "axial,top", "--init", str(bundled_cascade)], "top is not one of axial, coronal"),
             (["unet", "--hard-negatives", "0.25"], "--hard-negatives is a share"),
             (["mil", "--hard-negatives", "0"], "--hard-negatives is a share"),
             (["cascade", "--input-size", "256"], "--input-size is for the MIL")]
    for n, (args, message) in enumerate(cases):
        assert cli.train_main(args + ["--out", str(tmp_path / f"run{n}")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / f"run{n}" / "entry.json").exists()


def test_a_2_5d_cascade_reads_axial_neighbours_and_starts_as_its_one_slice_model(records, tmp_path):
    """--context-mm: the axial nets read each slice with the slices 5 mm above and below. Started from
    a one-slice cascade (neighbour weights 0) it gives that model's probabilities exactly."""
    from ICHLocalizationLib.methods.cascade3d import ThreePlaneCascade, plane_slices

    flat = run_training(records, TrainConfig(method="cascade", out=str(tmp_path / "flat"), epochs=1, batch_size=4,
                                             max_batches=1, val_fraction=0.25))
    init = tmp_path / "flat" / flat.files["weights"]["file"]
    deep = run_training(records, TrainConfig(method="cascade", out=str(tmp_path / "deep"), epochs=1, batch_size=4,
                                             max_batches=1, val_fraction=0.25, init=str(init), planes=["axial"],
                                             context_mm=5.0))
    assert deep.input["context_mm"] == 5.0 and deep.training["context_mm"] == 5.0
    assert load_state(deep)["axial"]["nets.ich.features.0.weight"].shape[1] == 9
    assert load_state(deep)["coronal"]["nets.ich.features.0.weight"].shape[1] == 3

    state = load_state(flat)
    inflated = dict(state, axial=_inflate_to_neighbours(state["axial"], load_state(deep)["axial"]))
    one = ThreePlaneCascade(flat, state, "cpu")
    two = ThreePlaneCascade(replace(flat, input={**flat.input, "context_mm": 5.0}), inflated, "cpu")
    slices = plane_slices(records[0]["casc_hu"].astype(np.float32), "axial")
    x = two.network_input(slices, [0, 7], "axial")
    assert x.shape == (2, 3) + slices.shape[1:]
    assert np.array_equal(x[1], slices[6:9]) and np.array_equal(x[0, 0], slices[0])  # the edge repeats itself
    p_one = one.plane_probabilities(slices, "axial", kernel=[1.0], stage1_threshold=0.0)
    p_two = two.plane_probabilities(slices, "axial", kernel=[1.0], stage1_threshold=0.0)
    assert np.allclose(p_one, p_two, atol=1e-5)
    # once the slice below weighs, the probabilities follow it
    below = {k: v.clone() for k, v in inflated["axial"].items()}
    below["nets.ich.features.0.weight"][:, :3] += 0.5
    three = ThreePlaneCascade(two.entry, dict(inflated, axial=below), "cpu")
    p_three = three.plane_probabilities(slices, "axial", kernel=[1.0], stage1_threshold=0.0)
    assert not np.allclose(p_one[:, 0], p_three[:, 0], atol=1e-3)


def test_a_2_5d_mil_reads_neighbours_and_starts_as_its_one_slice_model(records, twin, tmp_path):
    """--context-mm: the MIL network reads each slice with the slices 5 mm above and below, in training
    (plain and paired batches) and in the detector. Started from a one-slice model (neighbour weights
    0) it gives that model's maps exactly; once the slice below weighs, the maps follow it."""
    from ICHLocalizationLib.methods.weakly_supervised import WeaklySupervisedDetector
    from ICHTrainingLib.augment import slice_augmentation
    from ICHTrainingLib.families.mil import _paired_slice_batches
    from ICHTrainingLib.sampling import slice_batches, slice_items

    flat = run_training(records, TrainConfig(method="mil", out=str(tmp_path / "flat"), epochs=1, batch_size=4,
                                             max_batches=1, val_fraction=0.25))
    init = tmp_path / "flat" / flat.files["weights"]["file"]
    deep = run_training(records, TrainConfig(method="mil", out=str(tmp_path / "deep"), epochs=1, batch_size=4,
                                             max_batches=1, val_fraction=0.25, init=str(init), context_mm=5.0))
    assert deep.input["context_mm"] == 5.0 and deep.training["context_mm"] == 5.0
    assert load_state(deep)["features.0.0.weight"].shape[1] == 9

    items, labels, _ = slice_items(records)
    x, _ = next(slice_batches(items, labels, lambda d: d, "mil-code", 6, context_mm=5.0)(0, np.random.default_rng(0)))
    assert x.shape == (6, 9, 128, 128) and not x[:, 0:3].equal(x[:, 3:6])
    batches, _ = _paired_slice_batches([records[1], twin], slice_augmentation(False, seed=0), "mil-code", 2,
                                       context_mm=5.0)
    x, y = next(batches(0, np.random.default_rng(0)))
    assert x.shape == (2, 9, 128, 128) and y.tolist() == [1, 0]

    state = load_state(flat)
    inflated = _inflate_to_neighbours(state, load_state(deep))
    hu = records[0]["crop_hu"].astype(np.float32)
    one = WeaklySupervisedDetector(flat, state, "cpu")
    two = WeaklySupervisedDetector(replace(flat, input={**flat.input, "context_mm": 5.0}), inflated, "cpu")
    p_one, m_one = one.likelihood_maps(hu, 5.0)
    p_two, m_two = two.likelihood_maps(hu, 5.0)
    assert np.allclose(p_one, p_two, atol=1e-5) and np.allclose(m_one, m_two, atol=1e-5)
    below = {k: v.clone() for k, v in inflated.items()}
    below["features.0.0.weight"][:, :3] += 0.5
    three = WeaklySupervisedDetector(two.entry, below, "cpu")
    assert not np.allclose(m_one, three.likelihood_maps(hu, 5.0)[1], atol=1e-3)


def test_a_mil_reading_the_whole_256_crop_trains_and_detects_at_that_size(records, tmp_path):
    """--input-size 256: the batches and the detector read the head crop unhalved, the catalogue entry
    says so, and the map's grid is twice as fine (64 × 64 for the 256 input)."""
    import torch

    from ICHLocalizationLib.methods.weakly_supervised import WeaklySupervisedDetector
    from ICHLocalizationLib.preprocessing import crop_at
    from ICHTrainingLib.sampling import slice_batches, slice_items

    items, labels, _ = slice_items(records)
    x, _ = next(slice_batches(items, labels, lambda d: d, "mil-code", 4, size=256)(0, np.random.default_rng(0)))
    assert x.shape == (4, 3, 256, 256)
    with pytest.raises(ValueError, match="256 or 128 pixels"):
        crop_at(records[0]["crop_hu"], 160)
    entry = run_training(records, TrainConfig(method="mil", out=str(tmp_path / "big"), epochs=1, batch_size=4,
                                              max_batches=1, val_fraction=0.25, input_size=256))
    assert entry.input["size"] == 256 and entry.params["read_sizes"] == [256] and entry.training["input_size"] == 256
    method = WeaklySupervisedDetector(entry, load_state(entry), "cpu")
    with torch.no_grad():
        assert method.net(torch.zeros(1, 3, 256, 256))[1].shape == (1, 64, 64)
    probs, maps = method.likelihood_maps(records[0]["crop_hu"][:3].astype(np.float32))
    assert maps.shape == (3, 256, 256) and ((probs >= 0) & (probs <= 1)).all()


def test_cascade_fusion_tuning(records, tmp_path):
    """Tuning scores the method's own boxes on the head against the lesions' RAS boxes (paper 000's
    protocol) and gates the subtype nets afterwards exactly as the method does."""
    from ICHLocalizationLib.methods.cascade3d import ThreePlaneCascade, plane_slices
    from ICHLocalizationLib.phantom import generate
    from ICHTrainingLib.tune_postprocessing import (FUSION_KERNELS, FUSION_THRESHOLDS, STAGE1_THRESHOLDS, stage1_gated,
                                                    tune_cascade)

    casc = run_training(records, TrainConfig(method="cascade", out=str(tmp_path / "c"), epochs=1, batch_size=4, max_batches=1))
    phantoms = [generate(seed, subtypes=["IPH", "SDH"] if seed % 2 else ["IVH"], size=192, slices=16)
                for seed in (501, 502)]
    scans = [(ph.volume, ph.lesions) for ph in phantoms]
    assert {t["subtype"] for _, truth in scans for t in truth} == {"IPH", "SDH", "IVH"}
    best, table = tune_cascade(casc, scans)
    assert len(table) == len(STAGE1_THRESHOLDS) * len(FUSION_KERNELS) * len(FUSION_THRESHOLDS)
    assert best["f1"] >= max(r["f1"] for r in table) and 0 <= best["se"] <= 1
    # the per-classifier ascent starts from the best single threshold and never ends below it
    assert set(best["thresholds"]) == {"axial", "coronal", "sagittal"}
    assert all(len(v) == 5 for v in best["thresholds"].values())
    # tuning reads the subtype nets on every slice once and gates afterwards: the same as the method
    method = ThreePlaneCascade(casc, load_state(casc), "cpu")
    slices = plane_slices(records[0]["casc_hu"].astype(np.float32), "coronal")
    every = method.plane_probabilities(slices, "coronal", kernel=[1.0], stage1_threshold=0.0)
    cut = np.quantile(every[every[:, 0] > 0, 0], 0.5)
    gated = method.plane_probabilities(slices, "coronal", kernel=[1.0], stage1_threshold=cut)
    below = (every[:, 0] > 0) & (every[:, 0] < cut)
    assert (every[below, 1:] > 0).any() and (gated[below, 1:] == 0).all()
    assert np.allclose(stage1_gated(every, cut), gated, atol=1e-6)


def test_cascade_tuning_on_per_slice_boxes_scores_what_evaluate_counts():
    """PHE-SICH's protocol, with the bundled phantom cascade on two phantoms' per-slice IPH boxes:
    only IPH's thresholds move, and the tuned setting scores exactly what ich-evaluate counts for the
    method run with it."""
    from ICHLocalizationLib.methods.cascade3d import ThreePlaneCascade
    from ICHLocalizationLib.phantom import generate
    from ICHLocalizationLib.preprocessing import PreparedScan
    from ICHLocalizationLib.findings import SUBTYPES
    from ICHTrainingLib.evaluate import connected_boxes_2d, predicted_boxes_2d, slice_subtype_predictions
    from ICHTrainingLib.metrics import match_counts_2d
    from ICHTrainingLib.tune_postprocessing import tune_cascade

    casc = Catalogue.load().get("cascade", "cascade-phantom")
    phantoms = [generate(seed, subtypes=["IPH", "SDH"] if seed % 2 else ["IVH"], size=192, slices=16)
                for seed in (501, 502)]
    per_slice = []
    for ph in phantoms:
        iph = np.isin(ph.mask, [t["id"] for t in ph.lesions if t["subtype"] == "IPH"])
        per_slice.append((ph.volume, [[(r0, c0, r1, c1) for r0, r1, c0, c1 in connected_boxes_2d(m)] for m in iph]))
    assert any(per_slice[0][1]) and not any(per_slice[1][1])
    best, _ = tune_cascade(casc, per_slice, protocol="2d", rounds=1)
    assert best["protocol"] == "2d"
    for plane, values in best["thresholds"].items():
        assert values[1:] == [best["threshold"]] * 4, "PHE's boxes are IPH: the other subtypes keep the grid's"
    params = {**casc.params, "stage1_threshold": best["stage1_threshold"],
              "fusion": {k: best[k] for k in ("kernel", "threshold", "thresholds", "gap")}}
    method = ThreePlaneCascade(replace(casc, params=params), load_state(casc), "cpu")
    tp = fp = fn = 0
    for volume, boxes in per_slice:
        res = method.run(PreparedScan(volume))
        for predicted, truth in zip(predicted_boxes_2d(res), boxes):
            got = match_counts_2d(predicted["cascade"], truth)
            tp, fp, fn = tp + got[0], fp + got[1], fn + got[2]
    assert tp > 0 and fp + fn > 0, "a test that can tell right from wrong counts"
    assert abs(best["f1"] - 2 * tp / max(1, 2 * tp + fp + fn)) < 1e-9

    # CT-ICH's protocol beside it: the second phantom known by its subtypes per slice only (IVH);
    # every subtype's thresholds may move now, and the counts are ich-evaluate's per-slice calls
    subtypes = np.stack([np.isin(phantoms[1].mask, [t["id"] for t in phantoms[1].lesions if t["subtype"] == s])
                         .any(axis=(1, 2)) for s in SUBTYPES], axis=1)
    mixed = [per_slice[0], (phantoms[1].volume, subtypes)]
    best, _ = tune_cascade(casc, mixed, protocol="2d", rounds=1)
    params = {**casc.params, "stage1_threshold": best["stage1_threshold"],
              "fusion": {k: best[k] for k in ("kernel", "threshold", "thresholds", "gap")}}
    method = ThreePlaneCascade(replace(casc, params=params), load_state(casc), "cpu")
    tp = fp = fn = 0
    for predicted, truth in zip(predicted_boxes_2d(method.run(PreparedScan(mixed[0][0]))), mixed[0][1]):
        got = match_counts_2d(predicted["cascade"], truth)
        tp, fp, fn = tp + got[0], fp + got[1], fn + got[2]
    called = slice_subtype_predictions(method.run(PreparedScan(mixed[1][0])))["cascade"]
    tp, fp, fn = tp + (called & subtypes).sum(), fp + (called & ~subtypes).sum(), fn + (~called & subtypes).sum()
    assert subtypes[:, SUBTYPES.index("IVH")].any() and abs(best["f1"] - 2 * tp / max(1, 2 * tp + fp + fn)) < 1e-9


def test_unet_post_processing_tuning_scores_the_methods_own_output(records, tmp_path):
    from ICHLocalizationLib.phantom import generate
    from ICHTrainingLib.tune_postprocessing import tune_unet

    unet = run_training(records, TrainConfig(method="unet", out=str(tmp_path / "u"), epochs=1, batch_size=4, max_batches=1))
    scans = [(ph.volume, ph.mask > 0) for ph in (generate(505, subtypes=["IPH"], size=192, slices=16),
                                                 generate(506, subtypes=[], size=192, slices=16))]
    # an untrained U-Net: a gate of 1.01 keeps no slice, so the bleed-free scan scores 1 and the other 0
    search = {"gate_threshold": (0.0, 1.01), "threshold": (0.5,), "min_volume_ml": (0.05, 1e6)}
    best, table = tune_unet(unet, scans, search=search, rounds=1)
    assert best["dice"] == max(r["dice"] for r in table)
    nothing = [r for r in table if r["gate_threshold"] == 1.01]
    assert nothing and all(r["dice"] == 0.5 for r in nothing), "empty output: Dice 0 on the bleed, 1 on the healthy scan"
    assert {"closing_mm", "opening_mm"}.isdisjoint(best) and set(search) <= set(best)
    # real scans' truths: PHE's clots over the slices they speak for, CT-ICH's ICH per slice
    mask = scans[0][1]
    bleeding = mask.any(axis=(1, 2))
    mixed = [(scans[0][0], (mask, ~bleeding)), (scans[0][0], bleeding)]
    best, table = tune_unet(unet, mixed, search=search, rounds=1)
    nothing = [r for r in table if r["gate_threshold"] == 1.01]
    assert all(r["dice"] == 0.5 for r in nothing), "bleed-free slices left empty score 1; the missed bleed slices 0"


def test_unet_tuning_weighs_each_dataset_alike(records, tmp_path):
    """Three scans of one dataset and one of another: the tuning score is the mean of the two
    datasets' means, not of the four scans."""
    from ICHLocalizationLib.phantom import generate
    from ICHTrainingLib.tune_postprocessing import tune_unet

    unet = run_training(records, TrainConfig(method="unet", out=str(tmp_path / "u"), epochs=1, batch_size=4, max_batches=1))
    bleed, healthy = generate(505, subtypes=["IPH"], size=192, slices=16), generate(506, subtypes=[], size=192, slices=16)
    scans = []
    for name, ph in (("a", bleed), ("a", bleed), ("a", bleed), ("b", healthy)):
        volume = replace(ph.volume, metadata={**ph.volume.metadata, "dataset": name})
        scans.append((volume, ph.mask > 0))
    # a gate of 1.01 keeps no slice: Dice 0 on each bleed of "a", 1 on the healthy scan of "b"
    best, table = tune_unet(unet, scans, search={"gate_threshold": (1.01,), "threshold": (0.5,)}, rounds=1)
    assert best["dice"] == 0.5 and best["dice a"] == 0.0 and best["dice b"] == 1.0
    assert table[0]["dice"] == 0.5, "per scan it would read 0.25"


def test_unet_tuning_scores_each_kind_of_truth():
    from ICHTrainingLib.tune_postprocessing import scan_score

    pred = np.zeros((4, 8, 8), bool)
    pred[1, 2:4, 2:4] = True
    mask = np.zeros_like(pred)
    mask[1, 2:4, 2:6] = True
    assert abs(scan_score(pred, mask) - 2 * 4 / (4 + 8)) < 1e-6
    labelled = np.array([True, False, True, True])
    assert scan_score(pred, (mask, labelled)) == 1.0, "slice 1 is not labelled: nothing left to miss"
    assert scan_score(pred, (mask, ~labelled)) == abs(scan_score(pred, mask))
    assert scan_score(pred, np.array([False, True, False, False])) == 1.0
    assert abs(scan_score(pred, np.array([False, True, True, False])) - 2 / 3) < 1e-6
    assert scan_score(np.zeros_like(pred), np.zeros(4, bool)) == 1.0


def test_tuning_save_keeps_a_model_registered_meanwhile(tmp_path):
    """ich-tune loads, works for minutes, then saves: a model registered in between must survive."""
    import torch

    from ICHLocalizationLib.models import ModelEntry, file_sha256
    from ICHTrainingLib.cli import register, update_entry

    def entry(name, method):
        run = tmp_path / name
        run.mkdir()
        torch.save({"w": torch.zeros(1)}, run / f"{name}.pt")
        return ModelEntry(id=name, method=method, version="1", default=True, directory=run,
                          files={"weights": {"file": f"{name}.pt", "sha256": file_sha256(run / f"{name}.pt")}}), run

    cat_dir = tmp_path / "cat"
    register(cat_dir, *entry("a", "mil"))
    stale = Catalogue.load(cat_dir)  # what a tuner read when it started
    register(cat_dir, *entry("b", "unet"))  # registered while the tuner worked
    update_entry(stale.directory, "a", {"detector": {"h": 0.1, "T": 0.5, "d": 9}}, {"tuning": {"dice": 0.9}})
    after = Catalogue.load(cat_dir)
    assert {e.id for e in after.entries} == {"a", "b"}
    assert after.get("mil").params["detector"]["d"] == 9


def test_fit_keeps_the_best_validation_epoch(tmp_path):
    """Papers 001–003 keep the epoch with the best validation score, not the last one."""
    import torch

    from ICHTrainingLib.loop import fit

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    snapshots, scores = [], iter([0.5, 0.9, 0.7])

    def batches(epoch, rng):
        for _ in range(3):
            yield torch.randn(8, 4), torch.randn(8, 1)

    def validate(m):
        snapshots.append(m.weight.detach().clone())
        return {"val_auc": next(scores)}

    cfg = TrainConfig(method="mil", out=str(tmp_path), epochs=3, lr=0.1, device="cpu")
    history = fit(model, cfg, batches, lambda m, x, y: ((m(x) - y) ** 2).mean(), validate, name="toy", select="val_auc")
    assert [bool(e.get("kept")) for e in history] == [False, True, False]
    assert torch.equal(model.weight, snapshots[1]) and not torch.equal(model.weight, snapshots[2])


def load_script(name):
    """A module of scripts/ (not a package), imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_out_of_fold_runs_pool_into_one_report_and_never_count_a_patient_twice(tmp_path):
    """scripts/fold_report.py with one ich-evaluate scans.json per held-out fold: one report over all
    their patients; the same patient in two files is refused."""
    fold_report = load_script("fold_report")

    def scan(patient, fold, labels, scores):
        return {"patient": patient, "fold": fold, "labels": labels, "slice_subtypes": [[b] + [False] * 4 for b in labels],
                "scores": {"mil": scores}, "counts": {}}

    (tmp_path / "f0.json").write_text(json.dumps([scan("a", 0, [True, False], [0.9, 0.2])]))
    (tmp_path / "f1.json").write_text(json.dumps([scan("b", 1, [True, False], [0.1, 0.8]), scan("c", 2, [True], [0.5])]))
    records = fold_report.pooled_records([tmp_path / "f0.json", tmp_path / "f1.json"], {0, 1})
    assert [r["patient"] for r in records] == ["a", "b"], "fold 2 was not asked for"
    (tmp_path / "again.json").write_text(json.dumps([scan("a", 0, [True], [0.3])]))
    with pytest.raises(SystemExit, match="patient a is in"):
        fold_report.pooled_records([tmp_path / "f0.json", tmp_path / "again.json"], {0})


def test_registering_an_all_fold_retraining_keeps_the_out_of_fold_tuning(tmp_path):
    """scripts/register_run.py --keep-tuning: the new weights replace the entry of the same id, with that
    entry's tuned post-processing and held-out figures (marked as measured on the replaced weights)."""
    from ICHLocalizationLib.models import ModelEntry, file_sha256

    register_run = load_script("register_run")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "mil-real.pt").write_bytes(b"folds 0-3")
    tuned = {"detector": {"h": 0.45, "T": 0.05, "d": 24, "sigma": 5.2}}
    old = ModelEntry("mil-maxpool-real", "mil", "1", {"weights": {"file": "mil-real.pt", "sha256": "ab" * 32}},
                     params=tuned, training={"data": ["phe:folds=0-3"]},
                     metrics={"tuning": {"dice": 0.96}, "held_out": {"data": "fold 4", "phe": {"Dice": 0.84}}})
    Catalogue([old], tmp_path / "cat").save()
    run = tmp_path / "run"
    run.mkdir()
    (run / "mil-maxpool.pt").write_bytes(b"folds 0-4")
    untuned = {"id": "mil-maxpool-real", "method": "mil", "version": "2", "training": {"data": ["phe:folds=0-4"]},
               "files": {"weights": {"file": "mil-maxpool.pt", "sha256": "x"}},
               "params": {"detector": {"h": 0.005, "T": 0.3, "d": 11, "sigma": 2.0}, "mirror": "lr+ap"},
               "metrics": {"validation": {"val_auc": 0.9}}}
    (run / "entry.json").write_text(json.dumps(untuned))
    register_run.main([str(run), "mil-real.pt", "--models", str(tmp_path / "cat"), "--keep-tuning"])
    (got,) = Catalogue.load(tmp_path / "cat").entries
    assert got.files["weights"]["sha256"] == file_sha256(tmp_path / "cat" / "mil-real.pt")
    assert (tmp_path / "cat" / "mil-real.pt").read_bytes() == b"folds 0-4" and got.default
    assert got.params == {**tuned, "mirror": "lr+ap"} and got.metrics["validation"] == {"val_auc": 0.9}
    assert got.metrics["held_out"]["phe"] == {"Dice": 0.84} and "abababababab" in got.metrics["held_out"]["weights"]
    untuned["id"] = "mil-maxpool-new"
    (run / "entry.json").write_text(json.dumps(untuned))
    with pytest.raises(SystemExit, match="no mil-maxpool-new entry"):
        register_run.main([str(run), "mil-new.pt", "--models", str(tmp_path / "cat"), "--keep-tuning"])
    # re-tuned later on the same folds: new fold-4 reports of the fold-0-3 weights replace the figures,
    # and the note naming those weights stays
    held_out = load_script("held_out_metrics")
    (tmp_path / "report.json").write_text(json.dumps({"metrics": {"Dice": 0.88}}))
    held_out.main(["mil-maxpool-real", "fold 4", f"phe::{tmp_path / 'report.json'}", "--models", str(tmp_path / "cat"),
                   "--weights", "keep"])
    (got,) = Catalogue.load(tmp_path / "cat").entries
    assert got.metrics["held_out"]["phe"] == {"Dice": 0.88} and "abababababab" in got.metrics["held_out"]["weights"]


def test_the_false_positive_sheet_places_a_peak_behind_the_centre_of_the_head():
    """scripts/false_positive_sheet.py reports where on the head the MIL's map peaks: a point behind the
    centre of a round head, on its midline, reads about 0 mm right and its distance posterior; one
    towards the patient's left (LPS +i) reads negative right."""
    from ICHLocalizationLib.volume import CTVolume

    sheet = load_script("false_positive_sheet")
    hu = np.full((1, 101, 101), -1000.0, np.float32)
    rr, cc = np.mgrid[:101, :101]
    hu[0][(rr - 50) ** 2 + (cc - 50) ** 2 <= 40 ** 2] = 35.0
    volume = CTVolume.from_lps(hu, (0.5, 0.5, 5.0), np.zeros(3))
    right, back = sheet.peak_place(volume, 0, row=80, col=50)
    assert abs(right) < 0.5 and back == pytest.approx(15.0, abs=0.5)
    right, back = sheet.peak_place(volume, 0, row=50, col=70)
    assert right == pytest.approx(-10.0, abs=0.5) and abs(back) < 0.5


def test_hard_negative_mining_counts_the_negatives_scored_highest():
    """--hard-negatives: every positive counts; of the negatives only the share with the highest loss,
    weighted so that they stand for all negatives; share 1 is the plain mean."""
    import torch

    from ICHTrainingLib.families.mil import hardest_negatives_loss

    losses = torch.tensor([2.0, 0.1, 0.2, 0.3, 4.0])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    assert float(hardest_negatives_loss(losses, y, 1.0)) == pytest.approx(6.6 / 5)
    assert float(hardest_negatives_loss(losses, y, 0.25)) == pytest.approx((2.0 + 4.0 / 0.25) / 5)
    assert float(hardest_negatives_loss(losses, y, 0.5)) == pytest.approx((2.0 + (4.0 + 0.3) / 0.5) / 5)
    assert float(hardest_negatives_loss(losses[:1], y[:1], 0.25)) == pytest.approx(2.0), "a batch of positives only"
