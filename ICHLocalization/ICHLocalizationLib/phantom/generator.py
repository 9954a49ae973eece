"""One phantom from a seed: the head (anatomy.py), its bleeds (bleeds.py) and the scanner that
images it (scanner.py) share one random stream, drawn in a fixed order so that every existing
seed's phantom stays the same."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..volume import CTVolume, box_from_mask_ras
from .anatomy import Anatomy
from .bleeds import draw_lesions, midline_shift, render_bleeds
from .scanner import Scanner

RESERVED_SEEDS = range(9001, 9011)  # acceptance checks only: never train or tune on these


@dataclass
class Phantom:
    volume: CTVolume  # HU with padding −3024 outside the reconstruction circle
    mask: np.ndarray  # uint8 lesion id per voxel
    lesions: List[dict]  # truth.json entries
    seed: int
    pose_deg: Dict[str, float] = field(default_factory=dict)
    midline_shift_mm: float = 0.0

    def truth(self):
        k, j, i = self.mask.shape
        planes = {"axial": [[] for _ in range(k)], "coronal": [[] for _ in range(j)], "sagittal": [[] for _ in range(i)]}
        boxes2d = []
        by_id = {les["id"]: les for les in self.lesions}
        for lid, les in by_id.items():
            m = self.mask == lid
            for axis, name in ((0, "axial"), (1, "coronal"), (2, "sagittal")):
                other = tuple(a for a in range(3) if a != axis)
                for idx in np.nonzero(m.any(axis=other))[0]:
                    if les["subtype"] not in planes[name][idx]:
                        planes[name][idx].append(les["subtype"])
            for kk in np.nonzero(m.any(axis=(1, 2)))[0]:
                jj, ii = np.nonzero(m[kk])
                boxes2d.append({"slice": int(kk), "lesion": lid, "subtype": les["subtype"], "x": int(ii.min()),
                                "y": int(jj.min()), "width": int(ii.max() - ii.min() + 1),
                                "height": int(jj.max() - jj.min() + 1)})
        return {"seed": self.seed, "spacing_mm": [round(float(s), 5) for s in self.volume.spacing],
                "shape_kji": list(self.mask.shape), "pose_deg": self.pose_deg,
                "midline_shift_mm": round(self.midline_shift_mm, 2), "lesions": self.lesions,
                "slice_labels": planes, "boxes_2d": boxes2d}


class PhantomGenerator:
    """Draws one phantom from a seed; `generate()` renders it on the scanner's grid."""

    def __init__(self, seed: int, subtypes: Optional[Sequence[str]] = None, size: int = 512,
                 pixel_mm: Optional[float] = None, slice_thickness: float = 5.0, slices: Optional[int] = None,
                 acuity: str = "acute", max_pose_deg: float = 12.0, pose: Optional[Dict[str, float]] = None):
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        pixel = float(pixel_mm) if pixel_mm else float(rng.uniform(0.40, 0.50)) * 512.0 / int(size)
        self.anatomy = Anatomy(rng)
        self.scanner = Scanner(rng, size, pixel, slice_thickness, slices, max_pose_deg, pose)
        self.lesions = draw_lesions(rng, self.anatomy, self.seed, subtypes, acuity)
        self.shift = midline_shift(self.lesions)

    @property
    def pose(self):
        return self.scanner.pose

    def generate(self, bleeds: bool = True) -> Phantom:
        """Render the phantom. bleeds=False renders its bleed-free twin: the same head, pose, mass
        effect and scanner noise with no blood (nor edema or fracture) — a matched control slice
        for every bleed slice, so that a slice-label learner has only the blood to go by."""
        lesions = self.lesions if bleeds else []
        anatomy = self.anatomy

        def render(f):
            hu, skull, ctx = anatomy.render(f, self.shift)
            if ctx is None:
                return hu, np.zeros((len(lesions),) + f.x.shape, np.float32)
            return render_bleeds(f, hu, lesions, skull, ctx)

        reach = float(np.max(anatomy.head_r)) * 1.2 + 10
        hu, mask = self.scanner.scan(render, len(lesions), reach, anatomy.skull_base_z(), anatomy.hu["air"])
        volume = CTVolume(hu, self.scanner.grid(), name=f"phantom-{self.seed}")
        truth = _truth_lesions(volume, mask, lesions)
        return Phantom(volume, mask, truth, self.seed, dict(self.pose), self.shift)


def generate(seed: int, bleeds: bool = True, **kwargs) -> Phantom:
    return PhantomGenerator(seed, **kwargs).generate(bleeds)


def _truth_lesions(volume, mask, lesions):
    """truth.json's lesions; lesions under 0.05 mL are dropped from it and from the mask."""
    out = []
    new_id = 0
    remap = np.zeros(256, np.uint8)
    for idx, les in enumerate(lesions, start=1):
        m = mask == idx
        n = int(m.sum())
        if n * volume.voxel_ml < 0.05:
            continue  # too small to be seen: dropped from the truth and the mask
        new_id += 1
        remap[idx] = new_id
        lo, hi, centroid = box_from_mask_ras(volume, m)
        out.append({"id": new_id, "subtype": les.subtype, "acuity": les.acuity,
                    "blood_hu": round(les.blood_hu, 1),
                    "centroid_ras": [round(float(v), 3) for v in centroid],
                    "bbox_ras": {"min": [round(float(v), 3) for v in lo], "max": [round(float(v), 3) for v in hi]},
                    "volume_ml": round(n * volume.voxel_ml, 4), "voxels": n})
    mask[:] = remap[mask]
    return out
