"""Dataset readers on the real files in ../shared/data and on small folders laid out like each dataset."""
import csv

import numpy as np
import SimpleITK as sitk

from conftest import shared
from ICHTrainingLib.datasets import cq500, ctich, kaggle, rsna


def test_bhx_boxes_by_sop_instance_uid():
    boxes = cq500.read_bhx(shared("bhx-cq500-labels", "1_Initial_Manual_Labeling.csv"))
    assert sum(len(v) for v in boxes.values()) == 6283
    first = boxes["1.2.276.0.7230010.3.1.4.296485376.1.1521713089.1721949"][0]
    assert first["subtype"] == "IVH" and abs(first["x"] - 236.164) < 1e-3 and abs(first["height"] - 62.99) < 1e-2
    assert {b["subtype"] for v in boxes.values() for b in v} <= {"IPH", "IVH", "SAH", "SDH", "EDH"}


def test_cq500_reads_majority():
    reads = cq500.read_reads(shared("bhx-cq500-labels", "reads.csv"))
    assert len(reads) == 491, "CQ500 has 491 scans"
    assert reads["CQ500-CT-427"]["ICH"] == 1 and reads["CQ500-CT-427"]["IPH"] == 1 and reads["CQ500-CT-427"]["SDH"] == 0
    # CQ500-CT-181: SDH read by R1 only, EDH by R2 and R3 → majority 0 and 1
    assert reads["CQ500-CT-181"]["SDH"] == 0 and reads["CQ500-CT-181"]["EDH"] == 1


def test_cq500_series_choice():
    series = {"a": ("CT PLAIN THIN", 0.625), "b": ("CT 5mm", 5.0), "c": ("BONE 5mm", 5.0)}
    assert cq500.choose_series(series) == "b"
    assert cq500.choose_series({"a": ("CT PLAIN THIN", 0.625), "c": ("BONE 5mm", 5.0)}) == "a"


def test_ctich_csv_joined_to_the_26_slices():
    items = ctich.read_slice_subset(shared("ct-ich-slices"))
    assert len(items) == 26
    counts = {s: sum(s in it["subtypes"] for it in items) for s in ("IPH", "EDH", "SDH", "IVH", "SAH")}
    # the CSV marks 12 of the 26 slices IPH (the data folder's README says 13)
    assert counts == {"IPH": 12, "EDH": 8, "SDH": 5, "IVH": 4, "SAH": 3}
    m = ctich.read_mask_dicom(items[0]["mask"])
    assert 464 <= m.sum() <= 11093


def test_kaggle_labels():
    labels = kaggle.read_labels(shared("head-ct-kaggle"))
    assert len(labels) == 100 and sum(l for _, l in labels) == 50
    assert all(p.exists() for p, _ in labels)


def test_rsna_samples_regroup_into_series():
    groups = rsna.group_series(shared("rsna-samples"))
    assert sum(len(v) for v in groups.values()) == 6


def test_rsna_layout_rebuilds_scans_with_slice_labels(tmp_path):
    from ICHLocalizationLib.phantom import generate, write_dicom_series

    ph = generate(61, subtypes=["SDH"], size=128, slices=32)
    write_dicom_series(ph, tmp_path / "tmp")
    import pydicom

    rows = [["ID", "Label"]]
    (tmp_path / "train").mkdir()
    positive = set(np.nonzero(ph.mask.any(axis=(1, 2)))[0])
    assert positive
    for k, f in enumerate(sorted((tmp_path / "tmp").glob("*.dcm"), reverse=True)):  # shuffled file order
        ds = pydicom.dcmread(str(f))
        sop = f"ID_{k:09x}"
        ds.save_as(str(tmp_path / "train" / f"{sop}.dcm"))
        kk = ds.InstanceNumber - 1
        for typ in ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"):
            rows.append([f"{sop}_{typ}", int(typ in ("subdural", "any") and kk in positive)])
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    recs = rsna.records(tmp_path / "train", tmp_path / "labels.csv", tmp_path / "cache")
    assert len(recs) == 1
    sdh = recs[0]["slice_subtypes"][:, 3]
    assert set(np.nonzero(sdh)[0]) == positive, "labels follow the slices sorted by position"
    assert recs[0]["crop_hu"].shape == (32, 256, 256)


def test_ctich_layout_gives_training_records(tmp_path):
    from ICHLocalizationLib.phantom import generate

    ph = generate(62, subtypes=["IPH"], size=128, slices=32)
    assert ph.mask.any()
    (tmp_path / "ct_scans").mkdir()
    (tmp_path / "masks").mkdir()
    img = ph.volume.to_sitk(ph.volume.hu.astype(np.int16))
    sitk.WriteImage(img, str(tmp_path / "ct_scans" / "049.nii"))
    sitk.WriteImage(ph.volume.to_sitk((ph.mask > 0).astype(np.uint8)), str(tmp_path / "masks" / "049.nii"))
    with open(tmp_path / ctich.CSV_NAME, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["PatientNumber", "SliceNumber", "Intraventricular", "Intraparenchymal", "Subarachnoid", "Epidural",
                    "Subdural", "No_Hemorrhage", "Fracture_Yes_No"])
        for k in range(32):
            bleed = int(ph.mask[k].any())
            w.writerow([49, k + 1, 0, bleed, 0, 0, 0, 1 - bleed, 0])
    recs = ctich.records(tmp_path)
    assert len(recs) == 1 and recs[0]["patient"] == "ctich-049"
    assert (recs[0]["slice_subtypes"][:, 0] == ph.mask.any(axis=(1, 2))).all(), "IPH slices from mask + CSV"
    assert recs[0]["casc_labels"].max() == 1
