"""Results as DICOM objects a PACS stores next to the study: a Segmentation (SEG) with one segment per
subtype, and a Comprehensive 3D SR following TID 1500 (Measurement Report) with one measurement group
per finding. Both are built with highdicom from the source series' headers, so they carry its
Patient and Study modules and reference its SOP instances.

Codes: subtypes use the SNOMED CT concepts of `findings.SUBTYPE_INFO` (as the .seg.nrrd does);
volume is SCT 118565006 in UCUM mL; ABC/2 is the same concept with method DCM 126029 (the LWH method
for the volume of an ellipsoid, which ABC/2 is); probabilities are DCM 122157 with unit UCUM "1".
Coordinates are DICOM patient coordinates (LPS, mm).
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .findings import SUBTYPES, Results, subtype_info
from .volume import LPS_TO_RAS, CTVolume, InputError

MANUFACTURER = "ICH Localization for 3D Slicer"
RESEARCH_USE = "RESEARCH USE ONLY: not for diagnostic use"
SEG_FILE, SR_FILE = "segmentation.dcm", "report.dcm"


def _codes():
    from pydicom.sr.coding import Code

    return {
        "altered": Code("49755003", "SCT", "Morphologically Altered Structure"),
        "brain": Code("12738006", "SCT", "Brain"),
        "volume": Code("118565006", "SCT", "Volume"),
        "ml": Code("ml", "UCUM", "milliliter"),
        "abc2": Code("126029", "DCM", "LWH method for volume of ellipsoid"),
        "probability": Code("122157", "DCM", "Probability"),
        "unity": Code("1", "UCUM", "no units"),
        "procedure": Code("30799-1", "LN", "CT Head WO contrast"),
    }


def subtype_code(code: Optional[str]):
    from pydicom.sr.coding import Code

    info = subtype_info(code)
    return Code(info.snomed, "SCT", info.snomed_meaning)


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ich-localization")
    except PackageNotFoundError:
        return "development"


# --- sources --------------------------------------------------------------------------------------
def source_headers(volume: CTVolume) -> List[Optional[object]]:
    """The source DICOM header of each slice k of the volume (None where a slice was interpolated).

    Files are matched to slices by position along the slice normal, so any listing order works (the
    reader's, or Slicer's DICOM.instanceUIDs)."""
    import pydicom

    files = volume.metadata.get("dicom_files")
    if not files:
        raise InputError(f"{volume.name}: DICOM output needs a DICOM input (a series folder, a DICOM file or a "
                         "volume loaded from Slicer's DICOM database); write .seg.nrrd/findings.json instead")
    lps = volume.ijk_to_lps
    normal = lps[:3, 2] / np.linalg.norm(lps[:3, 2])
    step = float(np.linalg.norm(lps[:3, 2]))
    per_slice: List[Optional[object]] = [None] * volume.shape[0]
    for path in files:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        offset = (np.array([float(v) for v in ds.ImagePositionPatient]) - lps[:3, 3]) @ normal if len(files) > 1 else 0.0
        k = int(round(offset / step))
        if not 0 <= k < volume.shape[0] or abs(offset - k * step) > 0.1 * step:
            raise InputError(f"{Path(path).name}: not a slice of {volume.name}; the DICOM files no longer match "
                             "the volume (was it resampled or cropped?)")
        per_slice[k] = ds
    return per_slice


# attributes of the Patient and Study modules that are type 2 (present, possibly empty) in DICOM:
# anonymized exports drop them, and the copies in a SEG or SR need them present
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")


def complete_headers(headers, warnings: List[str], slice_mm: float):
    """Copies of the source headers that carry what a SEG/SR copies from them. Anonymized exports
    (Kaggle's RSNA files) drop type-2 attributes, keep the SOP class only in the file meta and lose the
    FrameOfReferenceUID and SliceThickness: the first two are filled as DICOM allows (empty; from the
    meta), the frame of reference by a UID derived from the series and the thickness by the slice
    spacing the scan was read with, and said so. SOP instance UIDs are never changed, so
    the references still resolve."""
    from pydicom.uid import UID, generate_uid

    invalid = sorted({str(ds.get(k)) for ds in headers for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
                      if ds.get(k) and not UID(str(ds.get(k))).is_valid})
    if invalid:
        warnings.append(f"the source's UIDs are not valid DICOM UIDs ({invalid[0]}…, an anonymized export?); the SEG and "
                        "SR reference them unchanged, so a strict PACS may refuse both")
    out = []
    frame = generate_uid(entropy_srcs=["ich-localization-frame", str(headers[0].SeriesInstanceUID)])
    if any("FrameOfReferenceUID" not in ds for ds in headers):
        warnings.append(f"the source series has no FrameOfReferenceUID; the DICOM output uses {frame}")
    if any(not ds.get("SliceThickness") for ds in headers):
        warnings.append(f"the source series has no SliceThickness; the DICOM SEG uses {slice_mm:.4g} mm")
    for ds in headers:
        ds = ds.copy()
        for keyword in TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")
        if "SOPClassUID" not in ds:
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        if "FrameOfReferenceUID" not in ds:
            ds.FrameOfReferenceUID = frame
        if not ds.get("SliceThickness"):
            ds.SliceThickness = f"{slice_mm:.4g}"
        out.append(ds)
    return out


# --- SEG ------------------------------------------------------------------------------------------
def segment_order(results: Results) -> List[str]:
    """Subtype codes present in the label map, in the fixed order IPH…EDH, then ICH (no subtype)."""
    present = results.subtype_masks()
    return [c for c in (*SUBTYPES, "ICH") if c in present]


def model_name_version(results: Results, method: str):
    """(name, version) of the model a method ran with: its catalogue tag id@version."""
    model = next((r.model for r in results.runs if r.method == method), "")
    name, _, version = model.partition("@")
    return name or method, version or "unknown"


def _algorithm(results: Results, method: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    name, version = model_name_version(results, method)
    return hd.AlgorithmIdentificationSequence(name=name, version=version, family=codes.cid7162.ArtificialIntelligence)


def build_segmentation(results: Results, headers: Sequence, series_number=901):
    """A binary DICOM SEG of the segmenter's label map, frames only where there is blood, or None when
    no segment was found (a SEG needs at least one segment)."""
    import highdicom as hd

    order = segment_order(results)
    if not order:
        return None
    masks = results.subtype_masks()
    keep = [k for k, ds in enumerate(headers) if ds is not None]
    labels = np.zeros((len(keep),) + results.lesion_labels.shape[1:], np.uint8)
    for number, code in enumerate(order, start=1):
        labels[masks[code][keep]] = number
    c = _codes()
    algorithm = _algorithm(results, next((s.method for s in results.segments), "unet"))
    descriptions = []
    for number, code in enumerate(order, start=1):
        info = subtype_info(code)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=info.name, segmented_property_category=c["altered"],
            segmented_property_type=subtype_code(code),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            tracking_id=code, tracking_uid=hd.UID(), anatomic_regions=[c["brain"]],
            display_color=hd.color.CIELabColor.from_rgb(*[round(255 * v) for v in info.color])))
    return hd.seg.Segmentation(
        source_images=[headers[k] for k in keep], pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="ICH U-Net segmenter", software_versions=software_version(),
        device_serial_number="none", content_label="ICH", content_description=RESEARCH_USE,
        content_qualification="RESEARCH", series_description="ICH segmentation (research use only)",
        omit_empty_frames=True)


# --- SR (TID 1500) --------------------------------------------------------------------------------
def _lps(ras) -> np.ndarray:
    return (LPS_TO_RAS[:3, :3] @ np.asarray(ras, float)).astype(np.float32)


def box_faces_lps(box) -> List[np.ndarray]:
    """The six faces of a (possibly oriented) box as closed polygons in LPS: a volume surface."""
    c = np.array([_lps(p) for p in box.corners_ras])  # corner index = 4x + 2y + z over the box axes
    quads = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    return [c[list(q) + [q[0]]] for q in quads]


def _probability(value: float):
    import highdicom as hd

    c = _codes()
    return hd.sr.Measurement(name=c["probability"], value=round(float(value), 4), unit=c["unity"])


def _group_identity(results: Results, method: str, identifier: str):
    """What every measurement group says of itself: its tracking id, the model that made it, the brain."""
    import highdicom as hd

    name, version = model_name_version(results, method)
    return dict(tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=identifier),
                algorithm_id=hd.sr.AlgorithmIdentification(name=name, version=version),
                finding_sites=[hd.sr.FindingSite(anatomic_location=_codes()["brain"])])


def _group_common(results: Results, finding, index: int):
    return dict(finding_type=subtype_code(finding.subtype), finding_category=_codes()["altered"],
                **_group_identity(results, finding.method, f"{finding.method} {finding.subtype or 'ICH'} {index}"))


def scan_groups(results: Results):
    """One TID 1501 group per method: its probability that the scan holds ICH (its highest slice
    score), so a report says what each method concluded even where it found nothing to outline."""
    import highdicom as hd

    return [hd.sr.MeasurementsAndQualitativeEvaluations(
        finding_type=subtype_code(None), measurements=[_probability(max(results.slice_scores[run.method]))],
        **_group_identity(results, run.method, f"{run.method} scan"))
        for run in results.runs if results.slice_scores.get(run.method)]


def measurement_groups(results: Results, seg, frame_of_reference: str, series_uid: str):
    """One TID 1500 measurement group per finding: segments (volume, ABC/2, probability) reference
    their subtype's SEG segment; boxes are volume surfaces; MIL points are 3D points."""
    import highdicom as hd

    c = _codes()
    groups = scan_groups(results)
    source = hd.sr.SourceSeriesForSegmentation(series_uid)
    numbers = {code: n for n, code in enumerate(segment_order(results), start=1)}
    for i, s in enumerate(results.segments, start=1):
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                segment_number=numbers[s.subtype or "ICH"], source_series=source),
            measurements=[hd.sr.Measurement(name=c["volume"], value=round(float(s.volume_ml), 3), unit=c["ml"]),
                          hd.sr.Measurement(name=c["volume"], value=round(float(s.abc2_ml), 3), unit=c["ml"],
                                            method=c["abc2"]),
                          _probability(s.probability)],
            **_group_common(results, s, i)))
    for i, b in enumerate(results.boxes, start=1):
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_volume_surface=hd.sr.VolumeSurface(
                graphic_type=hd.sr.GraphicTypeValues3D.POLYGON, graphic_data=box_faces_lps(b),
                frame_of_reference_uid=frame_of_reference, source_series=source),
            measurements=[_probability(b.probability)], **_group_common(results, b, i)))
    for i, p in enumerate(results.points, start=1):
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=hd.sr.ImageRegion3D(graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                                                  graphic_data=_lps(p.ras)[None],
                                                  frame_of_reference_uid=frame_of_reference),
            measurements=[_probability(p.probability)], **_group_common(results, p, i)))
    return groups


def build_report(results: Results, headers: Sequence, seg=None, series_number=902):
    """A Comprehensive 3D SR holding a TID 1500 Measurement Report of every finding."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [ds for ds in headers if ds is not None]
    first = sources[0]
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=MANUFACTURER, model_name=", ".join(sorted({r.model for r in results.runs}))))
    context = hd.sr.ObservationContext(observer_device_context=observer)
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=_codes()["procedure"],
        imaging_measurements=measurement_groups(results, seg, str(first.FrameOfReferenceUID),
                                                str(first.SeriesInstanceUID)))
    return hd.sr.Comprehensive3DSR(
        evidence=sources + ([seg] if seg is not None else []), content=report, series_instance_uid=hd.UID(),
        series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        is_complete=True, content_qualification="RESEARCH", series_description="ICH findings (research use only)",
        manufacturer_model_name="ICH Localization", software_versions=software_version())


def write_dicom(results: Results, folder: Path) -> Dict[str, Path]:
    """segmentation.dcm (when the segmenter found blood) and report.dcm under folder."""
    warnings: List[str] = []
    headers = source_headers(results.volume)
    present = [ds for ds in headers if ds is not None]
    fixed = iter(complete_headers(present, warnings, float(results.volume.spacing[2])))
    headers = [next(fixed) if ds is not None else None for ds in headers]
    if len(present) < len(headers):
        warnings.append(f"{len(headers) - len(present)} interpolated slice(s) have no source image and are left out "
                        "of the DICOM SEG")
    written = {}
    seg = build_segmentation(results, headers)
    if seg is not None:
        written["segmentation"] = folder / SEG_FILE
        seg.save_as(str(written["segmentation"]))
    written["report"] = folder / SR_FILE
    build_report(results, headers, seg).save_as(str(written["report"]))
    results.warnings += [w for w in warnings if w not in results.warnings]
    return written


def try_write_dicom(results: Results, folder: Path) -> Tuple[Dict[str, Path], Optional[str]]:
    """write_dicom into folder (made if needed), never raising: (files written, None), or ({}, why
    not). Callers keep the findings whatever happens to their DICOM copies."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return write_dicom(results, folder), None
    except Exception as exc:  # noqa: BLE001 - the caller's other outputs must not be lost to it
        return {}, f"{type(exc).__name__}: {exc}"
