"""What a method found, in patient (RAS) coordinates: points, boxes, segments, a likelihood map.

`Results` is one run of one or more methods on one volume; it turns into findings.json / CSV here
and into MRML nodes in `mrml.py`.
"""
import csv
import io
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

SUBTYPES = ("IPH", "IVH", "SAH", "SDH", "EDH")


@dataclass(frozen=True)
class Subtype:
    code: str
    name: str
    snomed: str  # SNOMED CT concept id of the disorder
    snomed_meaning: str
    color: tuple  # RGB 0..1, also the segment and ROI color


# SNOMED CT concepts (International Edition). The EDH concept should be re-verified against a SNOMED
# browser before clinical deployment (see README, "Terminology").
SUBTYPE_INFO: Dict[str, Subtype] = {
    "IPH": Subtype("IPH", "Intraparenchymal hemorrhage", "274100004", "Cerebral hemorrhage", (0.90, 0.20, 0.20)),
    "IVH": Subtype("IVH", "Intraventricular hemorrhage", "274110009", "Intraventricular hemorrhage", (0.20, 0.45, 0.95)),
    "SAH": Subtype("SAH", "Subarachnoid hemorrhage", "21454007", "Subarachnoid intracranial hemorrhage", (0.95, 0.75, 0.10)),
    "SDH": Subtype("SDH", "Subdural hemorrhage", "35486000", "Subdural intracranial hemorrhage", (0.20, 0.80, 0.30)),
    "EDH": Subtype("EDH", "Epidural hemorrhage", "68752002", "Extradural hemorrhage", (0.75, 0.30, 0.90)),
}
ICH_INFO = Subtype("ICH", "Intracranial hemorrhage", "1386000", "Intracranial hemorrhage", (1.00, 0.40, 0.10))


def subtype_info(code: Optional[str]) -> Subtype:
    return SUBTYPE_INFO.get(code or "", ICH_INFO)


def terminology_entry(code: Optional[str]) -> str:
    """Slicer's segment terminology string (category morphologically altered structure, type = disorder)."""
    info = subtype_info(code)
    return ("Segmentation category and type - 3D Slicer General Anatomy list"
            "~SCT^49755003^Morphologically Altered Structure"
            f"~SCT^{info.snomed}^{info.snomed_meaning}"
            "~^^~Anatomic codes - DICOM master list~SCT^12738006^Brain~^^")


def _box_json(lo, hi):
    return {"min": [round(float(v), 3) for v in lo], "max": [round(float(v), 3) for v in hi]}


@dataclass
class PointFinding:
    method: str
    ras: np.ndarray
    probability: float
    slice: int
    subtype: Optional[str] = None

    def to_json(self):
        return {"method": self.method, "kind": "point", "subtype": self.subtype,
                "probability": round(float(self.probability), 4),
                "ras": [round(float(v), 3) for v in self.ras], "slice": int(self.slice)}


@dataclass
class BoxFinding:
    """A 3D box: centre, size along its own axes and orientation (columns = box axes in RAS)."""
    method: str
    subtype: Optional[str]
    probability: float
    center_ras: np.ndarray
    size_mm: np.ndarray
    orientation_ras: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def corners_ras(self):
        half = np.asarray(self.size_mm) / 2.0
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
        return np.asarray(self.center_ras) + (signs * half) @ np.asarray(self.orientation_ras).T

    @property
    def bbox_ras(self):
        """Axis-aligned RAS box enclosing the (possibly oriented) box."""
        c = self.corners_ras
        return c.min(axis=0), c.max(axis=0)

    def to_json(self):
        lo, hi = self.bbox_ras
        return {"method": self.method, "kind": "box", "subtype": self.subtype,
                "probability": round(float(self.probability), 4), "bbox_ras": _box_json(lo, hi),
                "oriented": {"center_ras": [round(float(v), 3) for v in self.center_ras],
                             "size_mm": [round(float(v), 3) for v in self.size_mm],
                             "orientation_ras": [round(float(v), 6) for v in np.asarray(self.orientation_ras).ravel()]}}


@dataclass
class SegmentFinding:
    method: str
    subtype: Optional[str]
    probability: float
    centroid_ras: np.ndarray
    bbox_min_ras: np.ndarray
    bbox_max_ras: np.ndarray
    volume_ml: float
    abc2_ml: float
    label: int  # value of this lesion in Results.lesion_labels

    def to_json(self):
        return {"method": self.method, "kind": "segment", "subtype": self.subtype,
                "probability": round(float(self.probability), 4),
                "centroid_ras": [round(float(v), 3) for v in self.centroid_ras],
                "bbox_ras": _box_json(self.bbox_min_ras, self.bbox_max_ras),
                "volume_ml": round(float(self.volume_ml), 3), "abc2_ml": round(float(self.abc2_ml), 3)}


@dataclass
class MethodRun:
    method: str
    model: str
    device: str
    seconds: float

    def to_json(self):
        return {"method": self.method, "model": self.model, "device": self.device, "seconds": round(self.seconds, 3)}


@dataclass
class Results:
    """Everything one run found on one volume. Arrays live on the input volume's grid."""
    input: str
    volume: object  # CTVolume (grid of the label map and the likelihood map)
    points: List[PointFinding] = field(default_factory=list)
    boxes: List[BoxFinding] = field(default_factory=list)
    segments: List[SegmentFinding] = field(default_factory=list)
    slice_scores: Dict[str, List[float]] = field(default_factory=dict)
    runs: List[MethodRun] = field(default_factory=list)
    lesion_labels: Optional[np.ndarray] = None  # uint16, 0 = none, n = segments[n-1]
    likelihood: Optional[np.ndarray] = None  # float32 in [0, 1]
    warnings: List[str] = field(default_factory=list)

    def merge(self, other: "Results"):
        """Add another method's results on the same volume (segment labels are renumbered)."""
        self.points += other.points
        self.boxes += other.boxes
        if other.lesion_labels is not None:  # a segmenter ran: keep its (possibly empty) label map
            if self.lesion_labels is None:
                self.lesion_labels = np.zeros(other.lesion_labels.shape, np.uint16)
            offset = len(self.segments)
            for seg in other.segments:
                seg.label += offset
            self.segments += other.segments
            nz = other.lesion_labels > 0
            self.lesion_labels[nz] = other.lesion_labels[nz] + offset
        if other.likelihood is not None:
            self.likelihood = other.likelihood
        self.slice_scores.update(other.slice_scores)
        self.runs += other.runs
        self.warnings += [w for w in other.warnings if w not in self.warnings]
        return self

    @property
    def findings(self):
        return [*self.points, *self.boxes, *self.segments]

    def subtype_masks(self):
        """{subtype code or 'ICH': boolean mask} from the segment findings."""
        out = {}
        if self.lesion_labels is None:
            return out
        for seg in self.segments:
            key = seg.subtype or "ICH"
            m = self.lesion_labels == seg.label
            out[key] = out[key] | m if key in out else m
        return out

    def to_json(self):
        # slice scores keep 6 decimals: near 1, where a confident model's scores crowd, 4 decimals made
        # 0.99996 and 0.99999 equal and cost the U-Net 0.03 of slice AUC on the Kaggle slices
        return {"input": self.input, "runs": [r.to_json() for r in self.runs],
                "slice_scores": {k: [round(float(v), 6) for v in vals] for k, vals in self.slice_scores.items()},
                "findings": [f.to_json() for f in self.findings], "warnings": list(self.warnings)}

    def dumps(self):
        return json.dumps(self.to_json(), indent=1)

    CSV_COLUMNS = ("method", "kind", "subtype", "probability", "r", "a", "s", "slice",
                   "size_r_mm", "size_a_mm", "size_s_mm", "volume_ml", "abc2_ml")

    def table_rows(self):
        """One row per finding, the columns of the findings table (CSV and Slicer table node)."""
        rows = []
        for f in self.findings:
            j = f.to_json()
            if j["kind"] == "point":
                pos, size = j["ras"], [None] * 3
            else:
                lo, hi = np.array(j["bbox_ras"]["min"]), np.array(j["bbox_ras"]["max"])
                pos = list(j.get("centroid_ras") or ((lo + hi) / 2).round(3).tolist())
                size = (hi - lo).round(2).tolist()
            rows.append({"method": j["method"], "kind": j["kind"], "subtype": j["subtype"] or "ICH",
                         "probability": j["probability"], "r": pos[0], "a": pos[1], "s": pos[2],
                         "slice": j.get("slice", ""), "size_r_mm": size[0], "size_a_mm": size[1],
                         "size_s_mm": size[2], "volume_ml": j.get("volume_ml", ""), "abc2_ml": j.get("abc2_ml", "")})
        return rows

    def to_csv(self):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.CSV_COLUMNS)
        writer.writeheader()
        for row in self.table_rows():
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return buf.getvalue()
