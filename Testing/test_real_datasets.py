"""The real datasets' readers (CT-ICH JPG pairs, PHE-SICH PNGs), their committed patient-level folds
and dataset specs. Tests on the real files skip cleanly when ../shared/data is absent."""
import json

import numpy as np
import pytest

from conftest import shared
from ICHTrainingLib.datasets import split_specs
from ICHTrainingLib.datasets.folds import FOLDS_JSON, N_FOLDS, load_folds, parse_folds, stratified_folds


def test_specs_split_per_dataset_and_folds_parse():
    assert split_specs("ctich-jpg:folds=0-3,phe:folds=0,2,phantom:1-120") == [
        "ctich-jpg:folds=0-3", "phe:folds=0,2", "phantom:1-120"]
    assert parse_folds("0-2,4") == [0, 1, 2, 4]
    with pytest.raises(ValueError, match="0..4"):
        parse_folds("3-5")


def test_a_fold_list_keeps_every_fold(tmp_path):
    """'folds=0,2-4' once read as fold 0 alone (the part after the comma was dropped)."""
    from ICHTrainingLib.datasets.real import parse_spec

    assert parse_spec("phe", f"folds=0,2-4,dir={tmp_path}") == (tmp_path, [0, 2, 3, 4])
    assert parse_spec("ctich-jpg", f"dir={tmp_path},folds=0-1,3") == (tmp_path, [0, 1, 3])
    with pytest.raises(ValueError, match="options are folds=0-4 and dir=FOLDER"):
        parse_spec("phe", "0,2")
    with pytest.raises(ValueError, match="options are folds=0-4 and dir=FOLDER"):
        parse_spec("phe", "fold=1")


def test_stratified_folds_put_every_repeated_subtype_in_several_folds():
    patients = {f"p{i}": ({"SDH"} if i < 3 else {"IVH"} if i < 5 else set(), i) for i in range(20)}
    folds = stratified_folds(patients)
    assert len({folds[f"p{i}"] for i in range(3)}) == 3 and len({folds["p3"], folds["p4"]}) == 2
    sizes = np.bincount(list(folds.values()), minlength=N_FOLDS)
    assert sizes.max() - sizes.min() <= 1


def test_committed_folds_hold_patient_ids_only():
    folds = json.loads(FOLDS_JSON.read_text())
    assert set(folds) == {"ctich-jpg", "phe"}
    for kind, table in folds.items():
        assert all(isinstance(p, str) and p.isdigit() and f in range(N_FOLDS) for p, f in table.items())
        assert sorted(set(table.values())) == list(range(N_FOLDS))


def test_ctich_folds_cover_the_dataset_with_each_subtype_in_several_folds():
    from ICHTrainingLib.datasets import ctich_jpg
    from ICHTrainingLib.datasets.ctich import read_diagnosis_csv

    folder = shared("ct-ich-jpg")
    folds = load_folds("ctich-jpg")
    assert set(folds) == set(ctich_jpg.patients(folder))
    diagnosis = read_diagnosis_csv(folder / ctich_jpg.CSV_NAME)
    for subtype in ("IPH", "IVH", "SAH", "SDH", "EDH"):
        holders = {f"{p:03d}" for (p, _), subs in diagnosis.items() if subtype in subs}
        assert len({folds[p] for p in holders}) >= 2, subtype


def test_ctich_jpg_gives_back_hu_geometry_and_slice_labels():
    from ICHTrainingLib.datasets import ctich_jpg

    folder = shared("ct-ich-jpg")
    volume, subtypes = ctich_jpg.read_scan(folder, "051")
    assert volume.hu.shape[1:] == (650, 650) and np.allclose(volume.spacing, (0.34, 0.34, 5.0))
    assert len(subtypes) == volume.shape[0] and sum("SDH" in s for s in subtypes) == 15
    mid = volume.hu[volume.shape[0] // 2]
    assert mid.min() <= -850 and mid.max() >= 1200, "air from the bone window, skull above the brain window"
    from ICHLocalizationLib.preprocessing import brain_mask

    brain = brain_mask(volume.hu[None, volume.shape[0] // 2])[0]
    assert 20 <= np.median(mid[brain]) <= 45, "brain tissue in HU (from the brain window)"


def test_phe_is_turned_anterior_up_and_its_boxes_hold_the_hematoma():
    from ICHTrainingLib.datasets import phe

    folder = shared("phe-sich")
    for patient in ("0001", "0008"):
        volume, boxes = phe.read_scan(folder, patient)
        assert volume.hu.shape[1:] == (512, 512)
        width = volume.hu.shape[2]
        blood, mirrored = [], []
        for k, slice_boxes in enumerate(boxes):
            for r0, c0, r1, c1 in slice_boxes:
                blood.append((volume.hu[k, r0:r1 + 1, c0:c1 + 1] > 55).mean())
                mirrored.append((volume.hu[k, r0:r1 + 1, width - 1 - c1:width - c0] > 55).mean())
        assert blood and np.mean(blood) > 3 * np.mean(mirrored), "blood-dense pixels in the box, not in its mirror image"
        from ICHLocalizationLib.preprocessing import brain_mask

        brain = brain_mask(volume.hu[None, len(boxes) // 2])[0]
        rows, cols = np.flatnonzero(brain.any(axis=1)), np.flatnonzero(brain.any(axis=0))
        assert rows[-1] - rows[0] > cols[-1] - cols[0], "anterior up: the brain is longer than wide"



def test_phe_edema_masks_turn_with_their_slices_and_lie_in_the_boxes():
    """read_edema's masks share read_scan's grid and orientation: on patient 0001 the edema of a
    slice with a box lies inside that box (the boxes enclose hematoma and edema)."""
    from ICHTrainingLib.datasets import phe
    from ICHTrainingLib.pseudo_masks import paint_boxes

    folder = shared("phe-sich")
    volume, boxes = phe.read_scan(folder, "0001")
    edema = phe.read_edema(folder, "0001")
    assert edema.shape == volume.hu.shape and edema.dtype == bool
    inside = paint_boxes(edema.shape, boxes) > 0
    boxed = inside.any(axis=(1, 2))
    assert edema[boxed].sum() > 1000 and (edema & inside)[boxed].sum() / edema[boxed].sum() > 0.95

def test_real_records_keep_slice_labels_and_never_claim_pixel_truth(phe_fold0_records):
    records = phe_fold0_records
    assert len(records) == 14 and all(r["truth"] == "boxes" and r["fold"] == 0 for r in records)
    r = records[0]
    assert r["crop_hu"].shape[1:] == (256, 256)
    box_slices = r["crop_labels"].any(axis=(1, 2))
    assert np.array_equal(box_slices, r["slice_subtypes"][:, 0]), "PHE boxes mark exactly the IPH slices"
    for r in records:  # the boxes reach the cascade grid, and only IPH
        assert r["casc_hu"].shape == (40, 128, 128) and set(np.unique(r["casc_labels"])) <= {0, 1}
        assert r["casc_labels"].any() == r["slice_subtypes"].any()


def test_ctich_per_slice_subtypes_reach_the_cascade_grid_axial_slices():
    shared("ct-ich-jpg")
    from ICHLocalizationLib.preprocessing import estimate_alignment, head_mask
    from ICHTrainingLib.datasets.phantom import casc_axial_subtypes
    from ICHTrainingLib.datasets.real import real_scans

    patient, _, volume, _ = next(s for s in real_scans("ctich-jpg", "folds=0") if s[2].metadata["slice_subtypes"].any())
    subtypes = volume.metadata["slice_subtypes"]
    head = head_mask(volume.hu)
    grid = casc_axial_subtypes(volume, estimate_alignment(volume, head), head, subtypes)
    assert grid.shape == (40, 5)
    assert np.array_equal(grid.any(axis=0), subtypes.any(axis=0)), f"patient {patient}: the same subtypes, no more"
    ratio = grid.any(axis=1).sum() * 5.0 / (subtypes.any(axis=1).sum() * volume.spacing[2])
    assert 0.7 < ratio < 2.5, "about as many millimetres of bleeding slices on the 5 mm grid as in the scan"
