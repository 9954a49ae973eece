"""Readers: DICOM series or slice, NIfTI, NRRD and 8-bit windowed PNG → CTVolume; head-CT validation.

Every refusal is an `InputError` whose message names the problem and what to do about it.
"""
import os
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .integrity import check_dicom_pixels, check_image_file, damaged
from .volume import CTVolume, InputError

PADDING_VALUES_HU = (-2000, -2048, -3024)  # scanner padding outside the reconstruction circle
AIR_HU = -1000.0
BONE_HU = 1000.0  # what a saturated 8-bit brain-window pixel is read as
MAX_VOXELS = 1024 * 1024 * 1200  # ~5 GB as float32: refuse rather than exhaust memory
ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
PNG_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_volume(path, spacing: Optional[Sequence[float]] = None, png_window=(40.0, 80.0),
                series_uid: Optional[str] = None, validate: bool = True, allow_gaps: bool = False) -> CTVolume:
    """Read any supported input into a CTVolume in HU (and check that it is a whole head CT).

    A damaged or incomplete file is refused before it is read (`integrity`); a DICOM series with
    slices missing from its middle is refused unless `allow_gaps`, which fills them by interpolation
    and records their positions in the volume's warnings.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        volume = read_dicom_folder(path, series_uid=series_uid, spacing=spacing, allow_gaps=allow_gaps)
    else:
        name = path.name.lower()
        if name.endswith(PNG_SUFFIXES):
            volume = read_png_slice(path, spacing, png_window)
        elif name.endswith(ITK_SUFFIXES):
            volume = read_itk_image(path, spacing)
        else:
            volume = read_dicom_file(path, spacing)
    if validate:
        validate_head_ct(volume)
    return volume


# --- ITK formats -------------------------------------------------------------------------------
def read_itk_image(path: Path, spacing=None) -> CTVolume:
    import SimpleITK as sitk

    check_image_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"{path.name}: not a readable image file (NIfTI/NRRD expected); check that the file is complete")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path.name}: has {image.GetNumberOfComponentsPerPixel()} colour channels; a CT in HU has one")
    if image.GetDimension() not in (2, 3):
        raise InputError(f"{path.name}: {image.GetDimension()}D image; a CT volume (3D) or a slice (2D) is needed")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        bad = _nifti_nonfinite_count(path)
        if bad:
            raise InputError(f"{path.name}: {bad} voxels are NaN or infinite; repair or re-export the volume")
    volume = CTVolume.from_sitk(sitk.Cast(image, sitk.sitkFloat32), name=_stem(path))
    if spacing is not None:
        volume = _with_spacing(volume, spacing)
    volume.hu = _padding_to_air(volume.hu)
    return volume


def _nifti_nonfinite_count(path: Path) -> int:
    """NaN/inf voxels of a float NIfTI. ITK's reader turns NaN into 0, so the raw data is checked here."""
    import gzip
    import struct

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(348)
        if len(header) < 348:
            return 0
        endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
        datatype = struct.unpack(endian + "h", header[70:72])[0]
        if datatype not in (16, 64):  # float32, float64
            return 0
        offset = int(struct.unpack(endian + "f", header[108:112])[0])
        f.read(max(0, offset - 348))
        data = np.frombuffer(f.read(), dtype=np.dtype(endian + ("f4" if datatype == 16 else "f8")))
    return int((~np.isfinite(data)).sum())


# --- DICOM ---------------------------------------------------------------------------------------
def _read_header(path):
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM or truncated: skipped and counted
        return None


def read_dicom_folder(folder: Path, series_uid=None, spacing=None, allow_gaps=False) -> CTVolume:
    """Read the axial CT series of a folder (or the one named by SeriesInstanceUID).

    Files that are not DICOM (notes, thumbnails) are skipped; a DICOM file cut short is refused.
    """
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    if not files:
        raise InputError(f"{folder}: the folder is empty; give a folder with a DICOM series or an image file")
    series = defaultdict(list)
    unreadable = 0
    for p in files:
        if p.stat().st_size == 0:
            raise damaged(p, "0 bytes, an interrupted copy?")
        ds = _read_header(p)
        if ds is None or "PixelData" not in ds and not hasattr(ds, "Rows"):
            if _is_dicom_image(p, ds):
                raise damaged(p, "a DICOM image cut short before its pixel data")
            unreadable += 1
            continue
        series[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append((p, ds))
    if not series:
        raise InputError(f"{folder}: none of its {len(files)} files is a readable DICOM image "
                         "(truncated or not DICOM); re-export the series from the scanner or PACS")
    if series_uid is not None:
        if series_uid not in series:
            raise InputError(f"{folder}: no series with SeriesInstanceUID {series_uid}; found {', '.join(series)}")
        uid = series_uid
    else:
        uid = _choose_axial_ct_series(series)
    members = series[uid]
    volume = _stack_dicom_slices(members, folder.name, spacing, allow_gaps)
    if len(series) > 1:
        volume.warnings.append(f"{len(series)} series in the folder; used {uid} ({len(members)} slices)")
    if unreadable:
        volume.warnings.append(f"{unreadable} unreadable file(s) skipped")
    volume.metadata["SeriesInstanceUID"] = uid
    return volume


def _is_dicom_image(path: Path, ds) -> bool:
    """A DICOM image file by its meta header (or its preamble, when even that cannot be parsed)."""
    if ds is None:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    uid = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    return uid is not None and "Image Storage" in getattr(uid, "name", "")


def _choose_axial_ct_series(series):
    def score(item):
        uid, members = item
        ds = members[0][1]
        is_ct = str(getattr(ds, "Modality", "CT")).upper() == "CT"
        iop = getattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])
        normal = np.cross(np.array(iop[:3], float), np.array(iop[3:], float))
        axial = abs(normal[2]) > 0.9
        return (is_ct, axial, len(members))

    uid, _ = max(series.items(), key=score)
    return uid


def _stack_dicom_slices(members, name, spacing=None, allow_gaps=False) -> CTVolume:
    import pydicom

    first = members[0][1]
    modality = str(getattr(first, "Modality", "CT")).upper()
    if modality not in ("CT", "OT", "SC", ""):
        raise InputError(f"{name}: modality {modality}; this extension reads CT only")
    if len(members) == 1:
        return read_dicom_file(members[0][0], spacing)
    iop = getattr(first, "ImageOrientationPatient", None)
    if iop is None or not all(hasattr(ds, "ImagePositionPatient") for _, ds in members):
        raise InputError(f"{name}: slices lack ImagePositionPatient/ImageOrientationPatient, so their order and "
                         "spacing are unknown; re-export the series with full geometry")
    row, col = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row, col)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in members])
    order = np.argsort(positions @ normal)
    members = [members[i] for i in order]
    positions = positions[order]
    along = positions @ normal
    steps = np.diff(along)
    if np.any(np.abs(steps) < 1e-3):
        raise InputError(f"{name}: several slices share one position (duplicate or multi-phase series); "
                         "pick one series with --series-uid")
    dz = float(np.median(steps))
    missing = _missing_positions(along, dz)
    if missing and not allow_gaps:
        raise InputError(f"{name}: {len(missing)} slice(s) missing from the series at {_mm(missing)} "
                         "(an incomplete transfer?); send the whole series again, or pass --allow-gaps to fill them")
    warnings = _stacking_warnings(positions, normal, dz, missing)
    px = getattr(first, "PixelSpacing", None)
    if px is None:
        raise InputError(f"{name}: no PixelSpacing; re-export with geometry or pass --spacing SX,SY,SZ")
    slices = []
    for path, _ in members:
        ds = pydicom.dcmread(str(path))
        slices.append(_dicom_hu(ds, path))
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise InputError(f"{name}: slices of different sizes {sorted(shapes)}; not one series")
    hu = np.stack(slices)
    if missing:
        hu = _fill_missing(hu, along, dz)
    direction = np.column_stack([row, col, normal])
    vol = CTVolume.from_lps(hu, (float(px[1]), float(px[0]), dz), positions[0], direction, name=name)
    vol.warnings += warnings
    vol.metadata["Modality"] = modality
    vol.metadata["dicom_files"] = [str(path) for path, _ in members]  # sources of a DICOM SEG/SR
    return vol


def _stacking_warnings(positions, normal, dz, missing):
    """What the user should know about how the slices were stacked: filled gaps, uneven spacing, tilt."""
    along = positions @ normal
    steps = np.diff(along)
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} slice(s) missing from the series at position(s) {_mm(missing)} were filled by "
                        "interpolation: a bleed there may be missed or misplaced")
    elif np.abs(steps - dz).max() > 0.1 * dz + 0.05:
        warnings.append(f"non-uniform slice spacing ({steps.min():.2f}–{steps.max():.2f} mm); "
                        f"the median {dz:.2f} mm is used, so positions between gaps are approximate")
    offsets = positions - positions[0]
    drift = offsets - np.outer(offsets @ normal, normal)
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(drift[-1]), abs(along[-1] - along[0]))))
    if tilt > 0.5:
        warnings.append(f"gantry tilt of {tilt:.1f}° detected; slices are stacked along their normal, so "
                        "positions far from the centre are shifted by up to a few mm")
    return warnings


def _spacings_per_step(along, dz):
    """How many spacings each step between neighbouring slices spans: 1, or more where a step of at
    least 1.5 spacings means slices are missing."""
    return [int(round(step / dz)) if step > 1.5 * dz else 1 for step in np.diff(along)]


def _missing_positions(along, dz):
    """Positions (mm along the slice normal) of the missing slices."""
    steps = zip(along[:-1], np.diff(along), _spacings_per_step(along, dz))
    return [float(start + step * m / count) for start, step, count in steps for m in range(1, count)]


def _fill_missing(hu, along, dz):
    """The slices on a regular grid of spacing about dz, missing ones linearly interpolated."""
    out = [hu[0]]
    for k, count in enumerate(_spacings_per_step(along, dz)):
        for m in range(1, count + 1):
            w = m / count
            out.append((1 - w) * hu[k] + w * hu[k + 1])
    return np.stack(out).astype(np.float32)


def _mm(positions):
    shown = ", ".join(f"{p:.1f}" for p in positions[:5])
    return f"{shown}{' …' if len(positions) > 5 else ''} mm"


def _dicom_hu(ds, path):
    check_dicom_pixels(ds, path)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{Path(path).name}: pixel data cannot be decoded ({type(exc).__name__}); "
                         "the file may be truncated or use an unsupported compression")
    if raw.ndim != 2:
        raise InputError(f"{Path(path).name}: {raw.ndim}D pixel data (colour or multi-frame); a CT slice is 2D greyscale")
    raw = raw.astype(np.float32)
    pad = getattr(ds, "PixelPaddingValue", None)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    hu = raw * slope + intercept
    if pad is not None:
        hu[raw == float(pad)] = AIR_HU
    return _padding_to_air(hu)


def _padding_to_air(hu):
    hu = np.asarray(hu, dtype=np.float32)
    below = hu <= -1900  # −2000/−2048/−3024 and other below-air padding
    if below.any():
        hu = hu.copy()
        hu[below] = AIR_HU
    return hu


def read_dicom_file(path: Path, spacing=None) -> CTVolume:
    """One DICOM slice. Without PixelSpacing it needs --spacing."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception:  # noqa: BLE001
        raise InputError(f"{Path(path).name}: not a readable DICOM file (truncated or another format)")
    if "PixelData" not in ds and _is_dicom_image(path, ds):
        raise damaged(path, "a DICOM image cut short before its pixel data")
    if "PixelData" not in ds:
        raise InputError(f"{Path(path).name}: DICOM without image data (a report or structured document?)")
    modality = str(getattr(ds, "Modality", "CT")).upper()
    if modality not in ("CT", "OT", "SC", ""):
        raise InputError(f"{Path(path).name}: modality {modality}; this extension reads CT only")
    hu = _dicom_hu(ds, path)
    px = getattr(ds, "PixelSpacing", None)
    iop = getattr(ds, "ImageOrientationPatient", None)
    ipp = getattr(ds, "ImagePositionPatient", None)
    if spacing is None and px is None:
        raise InputError(f"{Path(path).name}: no pixel spacing in the file; pass --spacing SX,SY,SZ in mm "
                         "(e.g. 0.45,0.45,5)")
    if spacing is not None:
        sp = tuple(spacing)
    else:
        thick = float(getattr(ds, "SliceThickness", 5.0) or 5.0)
        sp = (float(px[1]), float(px[0]), thick)
    direction = np.eye(3)
    if iop is not None:
        row, col = np.array(iop[:3], float), np.array(iop[3:], float)
        direction = np.column_stack([row, col, np.cross(row, col)])
    origin = np.array([float(v) for v in ipp]) if ipp is not None else np.zeros(3)  # DICOM/ITK default
    vol = CTVolume.from_lps(hu[None], sp, origin, direction, name=_stem(path))
    vol.metadata["Modality"] = modality
    vol.metadata["dicom_files"] = [str(path)]
    return vol


def _with_spacing(volume: CTVolume, spacing):
    m = volume.ijk_to_ras.copy()
    m[:3, :3] = volume.direction_ras @ np.diag(spacing)
    volume.ijk_to_ras = m
    return volume


# --- PNG -----------------------------------------------------------------------------------------
def read_png_slice(path: Path, spacing, png_window=(40.0, 80.0)) -> CTVolume:
    """An 8-bit windowed slice: grey 0..255 maps back to HU through the window it was exported with."""
    from PIL import Image

    if spacing is None:
        raise InputError(f"{path.name}: an 8-bit image has no geometry; pass --spacing SX,SY,SZ in mm "
                         "and --png-window LEVEL,WIDTH (default brain 40,80)")
    try:
        img = Image.open(path)
        img.load()
    except Exception:  # noqa: BLE001 - Pillow refuses a cut or corrupted PNG/JPEG in several ways
        raise InputError(f"{path.name}: not a readable image (incomplete or damaged?); export it again")
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() > 8.0:
        raise InputError(f"{path.name}: a colour image, not a greyscale CT slice; export the CT slice in greyscale")
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    level, width = png_window
    vol = CTVolume.from_lps(dewindow(grey, png_window)[None], spacing, np.zeros(3), name=_stem(path))  # ITK's origin
    vol.metadata["windowed"] = (float(level), float(width))
    vol.warnings.append(f"8-bit windowed image: HU recovered only inside the window L{level:g}/W{width:g} "
                        "(below it read as air, above it as bone)")
    return vol


def dewindow(grey, window=(40.0, 80.0)) -> np.ndarray:
    """HU of an 8-bit windowed image: grey levels inside the window as exported, the window's black as
    air (−1000) and its white as bone (+1000), so that head, skull and brain are found as in any CT.
    (Kaggle slice AUC with the phantom-trained models: MIL 0.46 → 0.61, U-Net 0.85 → 0.86, cascade
    0.77 → 0.75; see docs/accuracy.md.)"""
    hu = window_to_hu(grey, window)
    return np.where(grey <= 0.5, AIR_HU, np.where(grey >= 254.5, BONE_HU, hu)).astype(np.float32)


def window_to_hu(grey, window):
    """Grey 0..255 of an 8-bit export back to HU through the window (level, width) it was made with."""
    level, width = window
    return (level - width / 2.0) + np.asarray(grey, np.float32) / 255.0 * width


# --- validation ----------------------------------------------------------------------------------
def validate_head_ct(volume: CTVolume):
    """Refuse what is not a head CT, with a message that says what to do."""
    hu, name = volume.hu, volume.name
    k, j, i = hu.shape
    if hu.size > MAX_VOXELS:
        raise InputError(f"{name}: {hu.size / 1e6:.0f} million voxels exceed the {MAX_VOXELS / 1e6:.0f} million this "
                         "extension holds in memory; crop or resample the scan (e.g. Crop Volume in Slicer)")
    if min(i, j) < 32:
        raise InputError(f"{name}: {i}×{j} pixels per slice is too small for a head CT (at least 32×32 needed)")
    sp = volume.spacing
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"{name}: missing or invalid voxel spacing {sp}; pass --spacing SX,SY,SZ in mm")
    finite = np.isfinite(hu)
    if not finite.all():
        if not finite.any():
            raise InputError(f"{name}: every voxel is NaN or infinite; the file holds no image")
        raise InputError(f"{name}: {int((~finite).sum())} voxels are NaN or infinite; repair or re-export the volume")
    lo, hi = float(hu.min()), float(hu.max())
    if hi - lo < 1.0:
        raise InputError(f"{name}: constant volume (every voxel {lo:g}); the file holds no image")
    if "windowed" in volume.metadata:
        return  # only the window's HU range survives an 8-bit export
    if str(volume.metadata.get("Modality", "CT")) not in ("CT", "OT", "SC", ""):
        raise InputError(f"{name}: modality {volume.metadata['Modality']}; this extension reads CT only")
    if lo > -200:
        raise InputError(f"{name}: no air below -200 HU (intensities {lo:.0f}..{hi:.0f}): not a CT in Hounsfield "
                         "units (an MR or a rescaled image?); give the original CT")
    if hi > 6000 or lo < -1100 and (hu < -1100).mean() > 0.01:
        raise InputError(f"{name}: intensities {lo:.0f}..{hi:.0f} are outside CT's HU range; check the rescale "
                         "slope/intercept of the export")
    if not volume.is_2d and not volume.is_axial:
        volume.warnings.append("slices are not axial: the volume is resampled to axial slices where a method needs them")
    bone = hu > 300
    brain = (hu > 0) & (hu < 100)
    if bone.mean() < 0.0005 or brain.mean() < 0.01:
        raise InputError(f"{name}: no skull and brain found ({100 * bone.mean():.2f} % bone, {100 * brain.mean():.1f} % "
                         "brain-range voxels): not a head CT")
    # a head fits in ~25 cm: a body CT has soft tissue much wider than that
    soft_cols = np.nonzero(((hu > -300).mean(axis=(0, 1))) > 0.02)[0]
    if len(soft_cols) and (soft_cols[-1] - soft_cols[0]) * sp[0] > 320:
        raise InputError(f"{name}: the body in the image is {(soft_cols[-1] - soft_cols[0]) * sp[0]:.0f} mm wide; "
                         "this looks like a chest or body CT, not a head")


def _stem(path: Path) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".seg.nrrd") + ITK_SUFFIXES + PNG_SUFFIXES + (".dcm",):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_name(path) -> str:
    """Output folder name of an input: file stem or DICOM folder name."""
    path = Path(path)
    return path.name if path.is_dir() else _stem(path)


def write_image(volume: CTVolume, array, path, compress=True):
    """Write an array on `volume`'s grid with SimpleITK (NIfTI/NRRD by suffix)."""
    import SimpleITK as sitk

    os.makedirs(Path(path).parent, exist_ok=True)
    sitk.WriteImage(volume.to_sitk(array), str(path), compress)
