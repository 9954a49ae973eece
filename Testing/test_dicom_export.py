"""`ich-localize --dicom-out`: a DICOM SEG and a TID 1500 SR that read back (highdicom, pydicom) to
the same masks as segmentation.seg.nrrd and the same numbers as findings.json, reference the source
SOP instances, and pass dciodvfy (Debian's dicom3tools) where it is installed."""
import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import shared

hd = pytest.importorskip("highdicom")
slicerio = pytest.importorskip("slicerio")
from pydicom.sr.codedict import codes  # noqa: E402

from ICHLocalizationLib.cli import main  # noqa: E402
from ICHLocalizationLib.findings import SUBTYPE_INFO  # noqa: E402

VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
PROBABILITY = codes.DCM.Probability


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A 256×256×24 phantom series with an IPH and an SDH, as DICOM files."""
    from ICHLocalizationLib.phantom import generate, write_dicom_series

    d = tmp_path_factory.mktemp("dicom-series")
    ph = generate(31, subtypes=["IPH", "SDH"], size=256, slices=24)
    write_dicom_series(ph, d / "series")
    return d / "series"


@pytest.fixture(scope="module")
def exported(series, tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom-out")
    assert main([str(series), "--out", str(out), "--device", "cpu", "--dicom-out"]) == 0
    return out / "series"


def source_uids(series):
    import pydicom

    return {pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID: p for p in series.iterdir()}


def seg_masks_on_slices(seg_path, files_in_k_order):
    """{segment label: boolean (k, j, i) array} of a SEG, frames placed by their source image."""
    import pydicom

    seg = hd.seg.segread(str(seg_path))
    uids = [pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID for f in files_in_k_order]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    present = [u for u in uids if u in referenced]
    out = {}
    for desc in seg.SegmentSequence:
        pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=present, segment_numbers=[desc.SegmentNumber])
        full = np.zeros((len(uids),) + pixels.shape[1:3], bool)
        for n, uid in enumerate(present):
            full[uids.index(uid)] = pixels[n, ..., 0] > 0
        out[desc.SegmentLabel] = full
    return seg, out


def nrrd_masks_on_grid(path, volume):
    """{segment name: boolean (k, j, i) mask on the CT's grid} of a .seg.nrrd, placed through its ijkToLPS
    (Slicer may crop a segmentation to its extent)."""
    nrrd = slicerio.read_segmentation(str(path))
    voxels = np.asarray(nrrd["voxels"])
    lps_to_ct = np.linalg.inv(volume.ijk_to_lps)
    out = {}
    for s in nrrd["segments"]:
        ijk = np.argwhere(voxels == s["labelValue"])
        lps = (np.asarray(nrrd["ijkToLPS"]) @ np.c_[ijk, np.ones(len(ijk))].T)
        i, j, k = np.round(lps_to_ct @ lps)[:3].astype(int)
        mask = np.zeros(volume.shape, bool)
        mask[k, j, i] = True
        out[SUBTYPE_INFO[s["id"]].name] = mask
    return out


def test_seg_masks_equal_the_seg_nrrd_voxel_by_voxel(exported, series):
    from ICHLocalizationLib.io import read_volume

    volume = read_volume(series)
    files = sorted(series.iterdir())  # IM0001… in slice order, which is k order here
    seg, masks = seg_masks_on_slices(exported / "segmentation.dcm", files)
    reference = nrrd_masks_on_grid(exported / "segmentation.seg.nrrd", volume)
    assert set(masks) == set(reference) and masks, "one SEG segment per subtype of the .seg.nrrd"
    for name, mask in masks.items():
        assert np.array_equal(mask, reference[name]), f"{name}: {np.sum(mask != reference[name])} voxels differ"
        assert mask.any(), "no empty segment"
    assert max(int(m.sum()) for m in masks.values()) > 10000, "the phantom's bleeds are in the SEG"
    assert str(seg.SegmentationType.value if hasattr(seg.SegmentationType, "value") else seg.SegmentationType) == "BINARY"
    assert seg.NumberOfFrames == sum(int(m.any(axis=(1, 2)).sum()) for m in masks.values()), "frames only where there is blood"


def test_seg_codes_algorithm_and_research_flag(exported):
    seg = hd.seg.segread(str(exported / "segmentation.dcm"))
    found = json.loads((exported / "findings.json").read_text())
    unet_model = next(r["model"] for r in found["runs"] if r["method"] == "unet")
    for desc in seg.SegmentSequence:
        code = next(c for c, info in SUBTYPE_INFO.items() if info.name == desc.SegmentLabel)
        assert desc.SegmentedPropertyTypeCodeSequence[0].CodeValue == SUBTYPE_INFO[code].snomed
        assert desc.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert desc.AnatomicRegionSequence[0].CodeValue == "12738006"
        algorithm = desc.SegmentationAlgorithmIdentificationSequence[0]
        assert f"{algorithm.AlgorithmName}@{algorithm.AlgorithmVersion}" == unet_model
    assert seg.ContentQualification == "RESEARCH"


def test_patient_study_and_references_resolve(exported, series):
    import pydicom

    sources = source_uids(series)
    first = pydicom.dcmread(str(next(iter(sources.values()))), stop_before_pixels=True)
    seg = pydicom.dcmread(str(exported / "segmentation.dcm"))
    sr = pydicom.dcmread(str(exported / "report.dcm"))
    for ds in (seg, sr):
        assert ds.StudyInstanceUID == first.StudyInstanceUID and ds.PatientID == first.PatientID
        assert ds.PatientName == first.PatientName and ds.SeriesInstanceUID != first.SeriesInstanceUID
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced and referenced <= set(sources)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID in sources
    evidence = {i.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                for s in st.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert set(sources) | {seg.SOPInstanceUID} == evidence


def test_report_numbers_equal_findings_json(exported):
    sr = hd.sr.srread(str(exported / "report.dcm"))
    seg = hd.seg.segread(str(exported / "segmentation.dcm"))
    found = json.loads((exported / "findings.json").read_text())
    segments = [f for f in found["findings"] if f["kind"] == "segment"]
    boxes = [f for f in found["findings"] if f["kind"] == "box"]
    points = [f for f in found["findings"] if f["kind"] == "point"]
    volumetric = sr.content.get_volumetric_roi_measurement_groups()
    by_segment = [g for g in volumetric if g.reference_type == codes.DCM.ReferencedSegment]
    assert len(by_segment) == len(segments) > 0
    for group, f in zip(by_segment, segments):
        volumes = group.get_measurements(name=VOLUME)
        assert [round(m.value, 3) for m in volumes] == [f["volume_ml"], f["abc2_ml"]]
        assert volumes[0].unit.value == "ml"
        assert group.get_measurements(name=PROBABILITY)[0].value == pytest.approx(f["probability"], abs=1e-4)
        assert group.finding_type.value == SUBTYPE_INFO[f["subtype"]].snomed
        item = group.referenced_segment[0]
        assert item.referenced_sop_instance_uid == seg.SOPInstanceUID
        number = item.ReferencedSOPSequence[0].ReferencedSegmentNumber
        assert seg.SegmentSequence[number - 1].SegmentLabel == SUBTYPE_INFO[f["subtype"]].name, "its subtype's segment"
    surfaces = [g for g in volumetric if g.reference_type == codes.DCM.VolumeSurface]
    assert len(surfaces) == len(boxes)
    for group, f in zip(surfaces, boxes):
        corners = np.concatenate([item.value for item in group.roi if hasattr(item, "GraphicType")])
        ras = corners * [-1, -1, 1]
        assert np.allclose(ras.min(axis=0), f["bbox_ras"]["min"], atol=0.01)
        assert np.allclose(ras.max(axis=0), f["bbox_ras"]["max"], atol=0.01)
    planar = sr.content.get_planar_roi_measurement_groups()
    assert len(planar) == len(points)
    for group, f in zip(planar, points):
        assert np.allclose(group.roi.value[0] * [-1, -1, 1], f["ras"], atol=0.01)


def test_dciodvfy_finds_no_error(exported):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian's dicom3tools) not installed; highdicom's own checks ran when writing")
    for name, iod in (("segmentation.dcm", "Segmentation"), ("report.dcm", "Comprehensive3DSR")):
        proc = subprocess.run(["dciodvfy", str(exported / name)], capture_output=True, text=True)
        text = proc.stdout + proc.stderr
        assert iod in text
        assert [line for line in text.splitlines() if line.startswith("Error")] == [], text


def test_non_dicom_input_is_refused_in_one_line(tmp_path, capsys):
    from ICHLocalizationLib.phantom import generate, write_phantom

    write_phantom(generate(5, subtypes=["IPH"], size=128, slices=12), tmp_path / "ph", "nifti")
    assert main([str(tmp_path / "ph" / "ct.nii.gz"), "--out", str(tmp_path / "out"), "--methods", "mil",
                 "--device", "cpu", "--dicom-out"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--dicom-out needs a DICOM series or file as input; run this scan without it")
    assert not (tmp_path / "out" / "ct" / "findings.json").exists()


def test_a_dicom_write_failure_keeps_the_findings(series, tmp_path, monkeypatch, capsys):
    """A full disk or a header highdicom refuses costs the SEG and SR only: the scan's other outputs are
    written, findings.json says why DICOM is missing, summary.csv reads 'partial', the exit status 1."""
    import csv

    from ICHLocalizationLib import dicom_export

    def refuse(results, folder):
        raise OSError("No space left on device")

    monkeypatch.setattr(dicom_export, "write_dicom", refuse)
    out = tmp_path / "out"
    assert main([str(series), "--out", str(out), "--device", "cpu", "--methods", "unet", "--dicom-out"]) == 1
    found = json.loads((out / "series" / "findings.json").read_text())
    assert [f for f in found["findings"] if f["kind"] == "segment"], "the phantom's bleeds are still reported"
    assert any(w.startswith("DICOM output failed (OSError: No space left on device)") for w in found["warnings"])
    assert (out / "series" / "segmentation.seg.nrrd").exists() and not (out / "series" / "report.dcm").exists()
    with open(out / "summary.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["status"] == "partial" and row["detail"].endswith("no DICOM output: OSError: No space left on device")
    assert "no DICOM output" in capsys.readouterr().err.strip().splitlines()[-1]


def test_interpolated_slices_are_left_out_of_the_seg(series, tmp_path):
    gap = tmp_path / "gap"
    shutil.copytree(series, gap)
    (gap / "IM0012.dcm").unlink()
    out = tmp_path / "out"
    assert main([str(gap), "--out", str(out), "--device", "cpu", "--methods", "unet", "--dicom-out", "--allow-gaps"]) == 0
    found = json.loads((out / "gap" / "findings.json").read_text())
    assert any("interpolated slice(s) have no source image" in w for w in found["warnings"])
    seg = hd.seg.segread(str(out / "gap" / "segmentation.dcm"))
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced <= set(source_uids(gap)), "every frame references an image that exists"


def test_rsna_samples_write_seg_and_report_that_read_back(tmp_path):
    import pydicom

    folder = shared("rsna-samples")
    out = tmp_path / "out"
    files = sorted(folder.glob("*.dcm"))
    assert main([*map(str, files), "--out", str(out), "--device", "cpu", "--dicom-out"]) == 0
    for path in files:
        case = out / path.stem
        found = json.loads((case / "findings.json").read_text())
        source = pydicom.dcmread(str(path), stop_before_pixels=True)
        sr = hd.sr.srread(str(case / "report.dcm"))
        assert sr.StudyInstanceUID == source.StudyInstanceUID, "the study of the Kaggle export, UID kept as it is"
        assert any("no FrameOfReferenceUID" in w for w in found["warnings"])
        assert any("not valid DICOM UIDs" in w for w in found["warnings"]), "Kaggle's 'ID_…' UIDs are said to be invalid"
        segments = [f for f in found["findings"] if f["kind"] == "segment"]
        if shutil.which("dciodvfy"):
            for name in ("report.dcm", "segmentation.dcm") if segments else ("report.dcm",):
                proc = subprocess.run(["dciodvfy", str(case / name)], capture_output=True, text=True)
                text = proc.stdout + proc.stderr
                errors = [e for e in text.splitlines() if e.startswith("Error")]
                assert all("ID_" in e or "invalid data values" in e for e in errors), "only the source's own UIDs"
        groups = [g for g in sr.content.get_volumetric_roi_measurement_groups()
                  if g.reference_type == codes.DCM.ReferencedSegment]
        assert [round(g.get_measurements(name=VOLUME)[0].value, 3) for g in groups] == [f["volume_ml"] for f in segments]
        if segments:
            seg, masks = seg_masks_on_slices(case / "segmentation.dcm", [path])
            nrrd = slicerio.read_segmentation(str(case / "segmentation.seg.nrrd"))
            total = sum(int((nrrd["voxels"] == s["labelValue"]).sum()) for s in nrrd["segments"])
            assert sum(int(m.sum()) for m in masks.values()) == total
            assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        else:
            assert not (case / "segmentation.dcm").exists()
