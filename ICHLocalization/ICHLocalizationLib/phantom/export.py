"""Writing a phantom: NIfTI/NRRD/DICOM CT with its truth mask and truth.json, and the console script
`ich-phantom`."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..findings import SUBTYPES
from .bleeds import BLOOD_HU
from .generator import Phantom, generate
from .scanner import PADDING_HU


def write_phantom(ph: Phantom, out: Path, fmt: str = "nifti"):
    from ..io import write_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hu16 = ph.volume.hu.astype(np.int16)
    if fmt == "nifti":
        write_image(ph.volume, hu16, out / "ct.nii.gz")
    elif fmt == "nrrd":
        write_image(ph.volume, hu16, out / "ct.nrrd")
    elif fmt == "dicom":
        write_dicom_series(ph, out / "dicom")
    else:
        raise ValueError(f"unknown format {fmt!r} (nifti, nrrd or dicom)")
    write_image(ph.volume, ph.mask, out / "truth_mask.nii.gz")
    (out / "truth.json").write_text(json.dumps(ph.truth(), indent=1))


def write_dicom_series(ph: Phantom, folder: Path):
    """One CT image storage file per slice: int16 stored = HU + 1024, intercept −1024, padding −2000."""
    import datetime

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    vol = ph.volume
    lps = vol.ijk_to_lps
    sp = vol.spacing
    study, series, frame = (generate_uid(entropy_srcs=[f"ich-phantom-{ph.seed}-{s}"]) for s in ("study", "series", "frame"))
    today = datetime.date(2026, 1, 1).strftime("%Y%m%d")
    row_dir = lps[:3, 0] / sp[0]
    col_dir = lps[:3, 1] / sp[1]
    stored = np.round(vol.hu + 1024).astype(np.int16)
    stored[vol.hu <= PADDING_HU] = -2000
    for k in range(vol.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid(entropy_srcs=[f"ich-phantom-{ph.seed}-slice-{k}"])
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"IM{k + 1:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.Manufacturer = "ICH phantom"
        ds.PatientName = f"Phantom^{ph.seed}"
        ds.PatientID = f"PHANTOM{ph.seed}"
        ds.StudyDate = ds.SeriesDate = today
        ds.StudyTime, ds.StudyID, ds.AccessionNumber = "090000", "1", f"PH{ph.seed}"
        ds.StudyDescription = "CT HEAD WO CONTRAST (synthetic)"
        ds.SeriesDescription = "Axial brain (synthetic phantom)"
        ds.BodyPartExamined = "HEAD"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesNumber, ds.InstanceNumber = 2, k + 1
        ds.KVP, ds.ConvolutionKernel = 120, "H30s"
        ds.ImagePositionPatient = [f"{v:.4f}" for v in lps[:3, 3] + lps[:3, 2] * k]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.SliceLocation = f"{float((lps[:3, 3] + lps[:3, 2] * k)[2]):.4f}"
        ds.SliceThickness = f"{sp[2]:.4f}"
        ds.PixelSpacing = [f"{sp[1]:.6f}", f"{sp[0]:.6f}"]
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelPaddingValue = -2000
        ds.WindowCenter, ds.WindowWidth = 40, 80
        ds.PixelData = stored[k].tobytes()
        ds.save_as(str(folder / f"IM{k + 1:04d}.dcm"), enforce_file_format=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="ich-phantom", description="Synthetic head CT with known bleeds.")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=("nifti", "dicom", "nrrd"), default="nifti")
    ap.add_argument("--slice-thickness", type=float, default=5.0, help="mm (0.6–5)")
    ap.add_argument("--slices", type=int, help="number of slices (default: 160 mm of head)")
    ap.add_argument("--size", type=int, default=512, help="in-plane matrix")
    ap.add_argument("--subtypes", help="comma list of IPH,IVH,SAH,SDH,EDH, or 'none' for a healthy head")
    ap.add_argument("--acuity", choices=tuple(BLOOD_HU), default="acute")
    args = ap.parse_args(argv)
    subtypes = None
    if args.subtypes is not None:
        subtypes = [] if args.subtypes.strip().lower() == "none" else [s.strip().upper() for s in args.subtypes.split(",") if s.strip()]
        bad = [s for s in subtypes if s not in SUBTYPES]
        if bad:
            print(f"ich-phantom: unknown subtype(s) {', '.join(bad)}; use {', '.join(SUBTYPES)} or none", file=sys.stderr)
            return 2
    if not 0.5 <= args.slice_thickness <= 10:
        print("ich-phantom: --slice-thickness must be between 0.5 and 10 mm", file=sys.stderr)
        return 2
    ph = generate(args.seed, subtypes=subtypes, size=args.size, slice_thickness=args.slice_thickness,
                  slices=args.slices, acuity=args.acuity)
    write_phantom(ph, Path(args.out), args.format)
    print(f"phantom {args.seed}: {ph.volume.describe()}, {len(ph.lesions)} lesion(s): "
          + ", ".join(f"{l['subtype']} {l['volume_ml']:.1f} mL" for l in ph.lesions))
    return 0
