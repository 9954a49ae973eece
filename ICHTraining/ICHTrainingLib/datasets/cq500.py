"""CQ500 (Chilamkurthy et al.) with BHX boxes (Reis et al.).

- `reads.csv`: three readers' patient-level labels (R1:ICH … R3:SAH); the label is the majority (≥ 2 of 3).
- BHX CSV: one row per box, keyed by SOPInstanceUID, with `data` {x, y, width, height} in 512-pixel
  coordinates and `labelName` (Intraparenchymal, Intraventricular, Subarachnoid, Subdural, Epidural,
  Chronic); boxes are matched to slices by SOPInstanceUID.
- Series choice: CQ500 stores several reconstructions per patient; we take the soft-tissue kernel
  series with 5 mm slices when present (as paper 000's 5 mm axial grid), else the thinnest soft-tissue
  one (`choose_series`).
"""
import ast
import csv
from collections import defaultdict

BHX_SUBTYPES = {"Intraparenchymal": "IPH", "Intraventricular": "IVH", "Subarachnoid": "SAH", "Subdural": "SDH",
                "Epidural": "EDH", "Chronic": "SDH"}
READS_SUBTYPES = ("ICH", "IPH", "IVH", "SDH", "EDH", "SAH")


def read_reads(path):
    """{patient name: {code: 0|1 majority of three readers}}."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["name"]] = {c: int(sum(int(row[f"R{r}:{c}"]) for r in (1, 2, 3)) >= 2) for c in READS_SUBTYPES}
    return out


def read_bhx(path):
    """{SOPInstanceUID: [{x, y, width, height, subtype, series, study}]} (pixel coordinates of a 512 slice)."""
    out = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                box = ast.literal_eval(row["data"])
            except (ValueError, SyntaxError):
                continue
            out[row["SOPInstanceUID"]].append({
                "x": float(box["x"]), "y": float(box["y"]), "width": float(box["width"]), "height": float(box["height"]),
                "subtype": BHX_SUBTYPES.get(row["labelName"], row["labelName"]), "label": row["labelName"],
                "series": row["SeriesInstanceUID"], "study": row["StudyInstanceUID"]})
    return dict(out)


def choose_series(series_descriptions):
    """Pick the series to read from {uid: (description, slice thickness mm)}: soft-tissue kernel,
    5 mm preferred (paper 000's grid), else the thinnest soft-tissue series, else the first."""
    soft = {u: v for u, v in series_descriptions.items() if not any(w in v[0].upper() for w in ("BONE", "LUNG", "SHARP"))}
    pool = soft or series_descriptions
    five = [u for u, (_, t) in pool.items() if abs(float(t) - 5.0) < 0.6]
    if five:
        return sorted(five)[0]
    return min(pool, key=lambda u: float(pool[u][1]))
