"""Results → MRML nodes on a real slicer-core scene, written with Slicer's storage nodes and read
back with Slicer's readers and slicerio: a finding at a known RAS stays at that RAS, on an oblique,
non-isotropic volume."""
import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
slicerio = pytest.importorskip("slicerio")

from conftest import oblique_volume  # noqa: E402
from ICHLocalizationLib import mrml  # noqa: E402
from ICHLocalizationLib.findings import BoxFinding, MethodRun, PointFinding, Results, SegmentFinding  # noqa: E402
from ICHLocalizationLib.preprocessing import rotation_matrix  # noqa: E402


@pytest.fixture()
def results():
    vol = oblique_volume(shape=(12, 40, 48), spacing=(0.7, 0.9, 2.5))
    labels = np.zeros(vol.shape, np.uint16)
    labels[4:7, 10:20, 12:22] = 1
    kji = np.argwhere(labels == 1)
    lo, hi = vol.voxel_box_ras(kji.min(0), kji.max(0))
    res = Results(input="oblique", volume=vol)
    res.points.append(PointFinding("mil", vol.ijk_to_ras_points([[17.0, 15.0, 5.0]])[0], 0.93, 5))
    res.boxes.append(BoxFinding("cascade", "SDH", 0.81, np.array([3.0, -4.0, 10.0]), np.array([10.0, 20.0, 15.0]),
                                rotation_matrix(15.0, 0.0, 0.0)))
    res.segments.append(SegmentFinding("unet", "IPH", 0.9, vol.kji_to_ras_points(kji.mean(0))[0], lo, hi,
                                       len(kji) * vol.voxel_ml, 1.0, 1))
    res.lesion_labels = labels
    res.likelihood = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    res.runs.append(MethodRun("mil", "m@1", "cpu", 0.1))
    return res


def _read(scene, cls, path):
    node = scene.AddNewNodeByClass(cls)
    storage = node.CreateDefaultStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node), path
    return node


def test_outputs_keep_ras_positions(scene, results, tmp_path):
    ref = mrml.volume_to_node(results.volume, name="oblique")
    back_vol = mrml.volume_from_node(ref)
    assert np.allclose(back_vol.ijk_to_ras, results.volume.ijk_to_ras) and np.array_equal(back_vol.hu, results.volume.hu)
    nodes = mrml.results_to_nodes(results, ref, run_label="test")
    assert {"points", "box1", "segmentation", "likelihood", "table"} <= set(nodes)
    mrml.write_outputs(nodes, tmp_path)

    pts = _read(scene, "vtkMRMLMarkupsFiducialNode", tmp_path / "points.mrk.json")
    assert pts.GetNumberOfControlPoints() == 1
    assert np.allclose(pts.GetNthControlPointPositionWorld(0), results.points[0].ras, atol=1e-3)
    assert pts.GetNthControlPointLabel(0) == "ICH p=0.93"
    assert json.loads((tmp_path / "points.mrk.json").read_text())["markups"][0]["coordinateSystem"] == "LPS"

    roi = _read(scene, "vtkMRMLMarkupsROINode", tmp_path / "boxes" / "01.mrk.json")
    centre = [0.0, 0.0, 0.0]
    roi.GetCenterWorld(centre)
    lo, hi = results.boxes[0].bbox_ras
    assert np.allclose(centre, results.boxes[0].center_ras, atol=1e-3)
    assert np.allclose(roi.GetSize(), hi - lo, atol=1e-3), "the ROI is the RAS box of findings.json"
    assert (hi - lo)[0] > results.boxes[0].size_mm[0], "a rotated box's enclosing box is larger"

    seg = slicerio.read_segmentation(str(tmp_path / "segmentation.seg.nrrd"))
    assert [s["name"].split(" (")[0] for s in seg["segments"]] == ["Intraparenchymal hemorrhage"]
    term = seg["segments"][0]["terminology"]
    assert "274100004" in str(term), "SNOMED CT code of cerebral hemorrhage"
    vox = np.asarray(seg["voxels"])
    ijk = np.argwhere(vox > 0)
    lps = (np.asarray(seg["ijkToLPS"]) @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
    ras_seg = lps * [-1, -1, 1]
    truth = results.volume.kji_to_ras_points(np.argwhere(results.lesion_labels == 1))
    assert len(ras_seg) == len(truth)
    assert np.allclose(np.sort(ras_seg, axis=0), np.sort(truth, axis=0), atol=0.01)

    import SimpleITK as sitk

    lk = sitk.ReadImage(str(tmp_path / "likelihood.nrrd"))
    assert lk.GetSize() == results.volume.shape[::-1]
    assert np.allclose(np.array(lk.GetOrigin()), results.volume.ijk_to_lps[:3, 3], atol=1e-3)


def test_table_and_subject_hierarchy(scene, results):
    ref = mrml.volume_to_node(results.volume, name="oblique")
    first = mrml.results_to_nodes(results, ref, run_label="run 1")
    second = mrml.results_to_nodes(results, ref, run_label="run 2")
    sh = scene.GetSubjectHierarchyNode()
    assert first.folder_item != second.folder_item
    assert sh.GetItemName(first.folder_item) == "ICH oblique run 1"
    assert sh.GetItemParent(sh.GetItemByDataNode(first["points"])) == first.folder_item
    assert scene.GetNodeByID(first["points"].GetID()) is not None, "a second run leaves the first one's nodes alone"
    table = first["table"].GetTable()
    assert table.GetNumberOfRows() == 3
    cols = [table.GetColumn(i).GetName() for i in range(table.GetNumberOfColumns())]
    assert cols[:4] == ["method", "kind", "subtype", "probability"]
    assert table.GetColumnByName("subtype").GetValue(1) == "SDH"
    assert first["points"].GetLocked()


def test_a_segmenter_that_finds_nothing_still_writes_its_segmentation(scene, tmp_path):
    vol = oblique_volume(shape=(6, 20, 24))
    empty = Results(input="v", volume=vol, lesion_labels=np.zeros(vol.shape, np.uint16))
    merged = Results(input="v", volume=vol).merge(empty)
    assert merged.lesion_labels is not None and not merged.segments
    ref = mrml.volume_to_node(vol, name="v")
    nodes = mrml.results_to_nodes(merged, ref)
    mrml.write_outputs(nodes, tmp_path)
    seg = slicerio.read_segmentation(str(tmp_path / "segmentation.seg.nrrd"))
    assert seg["segments"] == []


def test_a_volume_is_read_in_world_coordinates_through_its_parent_transform(scene):
    vol = oblique_volume()
    node = mrml.volume_to_node(vol, name="moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, :3] = rotation_matrix(0.0, 0.0, 30.0)
    shift[:3, 3] = [5.0, -12.0, 40.0]
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(mrml.volume_from_node(node).ijk_to_ras, shift @ vol.ijk_to_ras, atol=1e-9)
    warp = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(mrml.InputError, match="harden"):
        mrml.volume_from_node(node)


def test_a_node_loaded_from_a_damaged_file_is_refused(scene, tmp_path):
    """Slicer's reader fills the missing half of a cut NIfTI with zeros; the node must not be used."""
    vol = oblique_volume()
    path = tmp_path / "ct.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(vol.to_sitk(vol.hu.astype(np.int16)), str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = scene.AddNode(node.CreateDefaultStorageNode())
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(node)
    assert slicer.util.arrayFromVolume(node).shape == vol.shape, "the reader accepted the cut file"
    with pytest.raises(mrml.InputError, match="ends early"):
        mrml.volume_from_node(node)
