"""Volume node ↔ CTVolume, and Results → MRML nodes, identically in Slicer and on slicer-core.

Outputs of one run sit in a subject-hierarchy folder named after the input and the run; a new run
adds a new folder and never touches earlier ones (or the user's edits of them).
"""
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .findings import ICH_INFO, Results, subtype_info, terminology_entry
from .integrity import check_image_file
from .volume import CTVolume, InputError


def _slicer():
    import slicer
    import slicer.util  # noqa: F401

    return slicer


def volume_from_node(node, check_source: bool = True) -> CTVolume:
    """A scalar volume node (any orientation, under any linear transform) → CTVolume in HU (world RAS).

    The file the node was loaded from, when there is one, must be whole: Slicer's NIfTI reader
    fills a truncated file with zeros, so the check runs here as it does before our own readers.
    """
    slicer = _slicer()
    import vtk

    source = source_file(node) if check_source else None
    if source is not None:
        check_image_file(source)
    arr = slicer.util.arrayFromVolume(node)
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_ras = _to_world(node) @ _numpy(m)
    vol = CTVolume(np.array(arr, dtype=np.float32), ijk_to_ras, name=node.GetName())
    vol.hu = np.where(vol.hu <= -1900, -1000.0, vol.hu).astype(np.float32)  # scanner padding → air
    return vol


def _numpy(matrix):
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _to_world(node):
    """4×4 from the node's coordinates to world RAS through its parent transforms (identity if none)."""
    import vtk

    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise InputError(f"{node.GetName()}: the volume is under a non-linear transform; harden the transform "
                         "(Data module: right-click → Harden transform) and run again")
    m = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(m)
    return _numpy(m)


def source_file(node) -> Optional[Path]:
    """The file a node was loaded from (its storage node's), if it still exists."""
    storage = node.GetStorageNode()
    name = storage.GetFileName() if storage is not None else None
    return Path(name) if name and Path(name).is_file() else None


def dicom_source_files(node) -> List[str]:
    """The DICOM files a volume was loaded from by Slicer's DICOM module (its `DICOM.instanceUIDs`
    attribute, looked up in the application's DICOM database); empty for any other volume."""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(_slicer(), "dicomDatabase", None)
    if not uids or database is None:
        return []
    files = [database.fileForInstance(uid) for uid in uids]
    return [f for f in files if f and Path(f).is_file()]


def volume_to_node(volume: CTVolume, name=None, array=None, scene=None):
    slicer = _slicer()
    node = slicer.util.addVolumeFromArray(volume.hu if array is None else array, volume.ijk_to_ras,
                                          name or volume.name)
    return node


class OutputNodes(dict):
    """name → node of one run, plus the subject-hierarchy folder item."""
    folder_item: int = 0


def results_to_nodes(results: Results, reference_node, run_label: Optional[str] = None, scene=None) -> OutputNodes:
    """Create the run's nodes: 'ICH points', one ROI per box, 'ICH segmentation', 'ICH likelihood',
    'ICH findings' (table), all in a new subject-hierarchy folder."""
    slicer = _slicer()
    scene = scene or slicer.mrmlScene
    sh = scene.GetSubjectHierarchyNode()
    run_label = run_label or time.strftime("%Y-%m-%d %H:%M:%S")
    folder = sh.CreateFolderItem(sh.GetSceneItemID(), f"ICH {reference_node.GetName()} {run_label}")
    nodes = OutputNodes()
    nodes.folder_item = folder

    def place(key, node):
        nodes[key] = node
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, folder)
        else:
            sh.CreateItem(folder, node)
        return node

    if results.points or any(r.method == "mil" for r in results.runs):
        place("points", _points_node(scene, results))
    for n, box in enumerate(results.boxes, start=1):
        place(f"box{n}", _roi_node(scene, box, n))
    if results.lesion_labels is not None:
        place("segmentation", _segmentation_node(scene, results, reference_node))
    if results.likelihood is not None:
        place("likelihood", _likelihood_node(scene, results))
    place("table", _table_node(scene, results))
    return nodes


def _points_node(scene, results):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "ICH points")
    node.CreateDefaultDisplayNodes()
    for p in results.points:
        info = subtype_info(p.subtype)
        idx = node.AddControlPoint(*[float(v) for v in p.ras])
        node.SetNthControlPointLabel(idx, f"{p.subtype or 'ICH'} p={p.probability:.2f}")
        node.SetNthControlPointDescription(idx, f"{p.method}, {info.name}, slice {p.slice}")
    colors = {subtype_info(p.subtype).color for p in results.points} or {ICH_INFO.color}
    node.GetDisplayNode().SetSelectedColor(*sorted(colors)[0])
    node.GetDisplayNode().SetColor(*sorted(colors)[0])
    node.SetLocked(True)
    return node


def _roi_node(scene, box, n):
    """The box as an ROI aligned with RAS: the box enclosing the cascade's aligned-frame box, so the
    ROI, findings.json's bbox_ras and the IoU protocol describe the same box (the exact oriented box
    is kept in findings.json under "oriented")."""
    info = subtype_info(box.subtype)
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", f"ICH box {n} {box.subtype or 'ICH'} p={box.probability:.2f}")
    node.CreateDefaultDisplayNodes()
    lo, hi = box.bbox_ras
    node.SetCenter(*[float(v) for v in (lo + hi) / 2.0])
    node.SetSize(*[float(v) for v in hi - lo])
    node.GetDisplayNode().SetSelectedColor(*info.color)
    node.GetDisplayNode().SetColor(*info.color)
    node.SetDescription(f"{box.method}: {info.name}, probability {box.probability:.2f}")
    node.SetAttribute("ICH.subtype", box.subtype or "ICH")
    return node


def _segmentation_node(scene, results, reference_node):
    slicer = _slicer()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ICH segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    seg = node.GetSegmentation()
    volumes = {}
    for seg_f in results.segments:
        volumes[seg_f.subtype or "ICH"] = volumes.get(seg_f.subtype or "ICH", 0.0) + seg_f.volume_ml
    for code, mask in results.subtype_masks().items():
        info = subtype_info(None if code == "ICH" else code)
        sid = seg.AddEmptySegment(code, f"{info.name} ({volumes.get(code, 0.0):.1f} mL)", list(info.color))
        segment = seg.GetSegment(sid)
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_entry(None if code == "ICH" else code))
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), node, sid, reference_node)
    return node


def _likelihood_node(scene, results):
    slicer = _slicer()
    node = slicer.util.addVolumeFromArray(results.likelihood.astype(np.float32), results.volume.ijk_to_ras,
                                          "ICH likelihood")
    display = node.GetDisplayNode()
    if display is not None:
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(0.0, 1.0)
        display.SetLowerThreshold(0.2)
        display.SetApplyThreshold(1)
    try:  # shown over the CT where there are slice views (the application); a no-op headless
        slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.4)
    except Exception:  # noqa: BLE001
        pass
    return node


def _table_node(scene, results):
    import vtk

    node = scene.AddNewNodeByClass("vtkMRMLTableNode", "ICH findings")
    table = node.GetTable()
    rows = results.table_rows()
    for col in Results.CSV_COLUMNS:
        numeric = col not in ("method", "kind", "subtype")
        arr = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        arr.SetName(col)
        for r in rows:
            v = r[col]
            if numeric:
                arr.InsertNextValue(float(v) if v not in ("", None) else float("nan"))
            else:
                arr.InsertNextValue(str(v))
        table.AddColumn(arr)
    node.Modified()
    return node


def write_node(node, path: Path):
    """Write a node with Slicer's own storage node (markups JSON in LPS, .seg.nrrd, .nrrd)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = node.CreateDefaultStorageNode()
    if storage is None:
        raise RuntimeError(f"no storage node for {node.GetClassName()} (is the Markups logic registered?)")
    storage.SetFileName(str(path))
    if hasattr(storage, "SetUseCompression"):
        storage.SetUseCompression(True)
    if not storage.WriteData(node):
        raise RuntimeError(f"Slicer's storage node could not write {path.name}")
    scene = node.GetScene()
    if scene is not None:
        scene.AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    return path


def write_outputs(nodes: Dict[str, object], folder: Path):
    """points.mrk.json, boxes/*.mrk.json, segmentation.seg.nrrd, likelihood.nrrd under folder."""
    folder = Path(folder)
    written = []
    for key, node in nodes.items():
        if key == "points":
            written.append(write_node(node, folder / "points.mrk.json"))
        elif key.startswith("box"):
            written.append(write_node(node, folder / "boxes" / f"{int(key[3:]):02d}.mrk.json"))
        elif key == "segmentation":
            written.append(write_node(node, folder / "segmentation.seg.nrrd"))
        elif key == "likelihood":
            written.append(write_node(node, folder / "likelihood.nrrd"))
    return written
