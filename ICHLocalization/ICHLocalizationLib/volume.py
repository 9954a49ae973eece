"""CTVolume: a head CT in Hounsfield units with its exact geometry.

Arrays are indexed (k, j, i) = (slice, row, column), as `slicer.util.arrayFromVolume` returns them.
Geometry is one 4×4 IJK→RAS matrix (Slicer's world); LPS (DICOM, ITK, NIfTI readers) is derived.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class InputError(ValueError):
    """An input the extension cannot process; the message says what is wrong and what to do."""


@dataclass
class CTVolume:
    hu: np.ndarray  # float32 HU, shape (k, j, i)
    ijk_to_ras: np.ndarray  # 4×4
    name: str = "volume"
    warnings: List[str] = field(default_factory=list)
    metadata: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        self.hu = np.asarray(self.hu)
        if self.hu.ndim == 2:
            self.hu = self.hu[None]
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=np.float64)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_lps(cls, hu, spacing, origin_lps, direction_lps=None, **kw):
        """From ITK-style geometry: spacing (i, j, k), origin and direction columns in LPS."""
        d = np.eye(3) if direction_lps is None else np.asarray(direction_lps, dtype=np.float64).reshape(3, 3)
        m = np.eye(4)
        m[:3, :3] = d @ np.diag(np.asarray(spacing, dtype=np.float64))
        m[:3, 3] = origin_lps
        return cls(hu=hu, ijk_to_ras=LPS_TO_RAS @ m, **kw)

    @classmethod
    def from_sitk(cls, image, **kw):
        import SimpleITK as sitk

        if image.GetDimension() == 2:
            image = sitk.JoinSeries(image)
        arr = sitk.GetArrayFromImage(image)
        return cls.from_lps(arr, image.GetSpacing(), image.GetOrigin(), np.array(image.GetDirection()).reshape(3, 3), **kw)

    def to_sitk(self, array=None):
        """SimpleITK image (LPS) on this grid, holding `array` (default: the HU array)."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(self.hu if array is None else array)
        img.SetSpacing(tuple(float(s) for s in self.spacing))
        img.SetOrigin(tuple(float(v) for v in self.ijk_to_lps[:3, 3]))
        img.SetDirection(tuple(float(v) for v in self.direction_lps.ravel()))
        return img

    # --- geometry -----------------------------------------------------------------------------
    @property
    def shape(self):
        return self.hu.shape

    @property
    def spacing(self):
        """Voxel size in mm along i, j, k."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def ijk_to_lps(self):
        return LPS_TO_RAS @ self.ijk_to_ras

    @property
    def direction_lps(self):
        return self.ijk_to_lps[:3, :3] / self.spacing

    @property
    def direction_ras(self):
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def voxel_ml(self):
        return float(np.prod(self.spacing)) / 1000.0

    def ijk_to_ras_points(self, ijk):
        """(N, 3) continuous (i, j, k) indices → (N, 3) RAS mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_ijk_points(self, ras):
        ras = np.atleast_2d(np.asarray(ras, dtype=np.float64))
        inv = np.linalg.inv(self.ijk_to_ras)
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def kji_to_ras_points(self, kji):
        return self.ijk_to_ras_points(np.asarray(kji, dtype=np.float64)[..., ::-1])

    def voxel_box_ras(self, kji_min, kji_max):
        """Axis-aligned RAS box enclosing the voxel range [kji_min, kji_max] (voxel edges, not centres)."""
        lo = np.asarray(kji_min, dtype=np.float64)[::-1] - 0.5
        hi = np.asarray(kji_max, dtype=np.float64)[::-1] + 0.5
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        ras = self.ijk_to_ras_points(corners)
        return ras.min(axis=0), ras.max(axis=0)

    @property
    def is_axial(self):
        """True when slices (k) run along the patient's S-I axis within 10°."""
        k_dir = self.direction_ras[:, 2]
        return abs(k_dir[2]) >= np.cos(np.radians(10))

    @property
    def is_2d(self):
        return self.hu.shape[0] == 1

    def describe(self):
        k, j, i = self.hu.shape
        sx, sy, sz = self.spacing
        return f"{i}×{j}×{k} voxels, {sx:.3g}×{sy:.3g}×{sz:.3g} mm"


def box_from_mask_ras(volume: CTVolume, mask: np.ndarray):
    """RAS bounding box (voxel edges) and centroid of a boolean mask on `volume`'s grid, or None."""
    kji = np.argwhere(mask)
    if not len(kji):
        return None
    lo, hi = volume.voxel_box_ras(kji.min(axis=0), kji.max(axis=0))
    centroid = volume.kji_to_ras_points(kji.mean(axis=0))[0]
    return lo, hi, centroid


def optional_spacing(text: Optional[str]):
    """Parse '--spacing SX,SY,SZ' (mm)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise InputError(f"--spacing must be three numbers in mm like 0.45,0.45,5 (got {text!r})")
    if len(values) == 2:
        values.append(5.0)
    if len(values) != 3 or min(values) <= 0:
        raise InputError(f"--spacing must be three positive numbers in mm like 0.45,0.45,5 (got {text!r})")
    return tuple(values)
