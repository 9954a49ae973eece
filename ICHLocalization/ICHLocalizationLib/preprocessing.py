"""Preprocessing shared by the methods: radiological windows, resampling (SimpleITK), head and brain
masks, 3D rotational alignment of the head, and the head-centred axial crop the 2D networks read."""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .volume import CTVolume, LPS_TO_RAS

# --- windows -------------------------------------------------------------------------------------
# A channel is (low HU, high HU) mapped linearly to [0, 1] and clipped.
WINDOWS: Dict[str, Tuple[float, float]] = {
    "brain": (0.0, 80.0),  # L40/W80 (paper 001, paper 000)
    "subdural": (-15.0, 115.0),  # L50/W130 (paper 001, paper 000)
    "bone": (-500.0, 1500.0),  # L500/W2000 (paper 000 names a bone window, no numbers)
    "wide": (-1000.0, 2000.0),  # unwindowed HU, shifted and scaled (MIL authors' first channel)
    "brain003": (40.0, 120.0),  # paper 003's brain window [40, 120]
}
# Named 3-channel input configurations (the model catalogue says which one a network expects).
# "mil-code" follows the MIL authors' code (raw HU, 0–80, −15–115, fixed scaling, no dataset mean/std);
# "paper000" is bone/brain/subdural as paper 000 describes.
CHANNEL_CONFIGS: Dict[str, Tuple[str, str, str]] = {
    "mil-code": ("wide", "brain", "subdural"),
    "paper000": ("bone", "brain", "subdural"),
    "unet": ("brain", "subdural", "brain003"),
}


def window(hu, name_or_range):
    lo, hi = WINDOWS[name_or_range] if isinstance(name_or_range, str) else name_or_range
    return np.clip((np.asarray(hu, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)


def to_channels(hu, config: str):
    """HU (..., H, W) → float32 (..., 3, H, W) from a named channel configuration."""
    return np.stack([window(hu, w) for w in CHANNEL_CONFIGS[config]], axis=-3)


def channels_torch(hu, config: str):
    """Same as `to_channels` on a torch tensor (N, H, W) → (N, 3, H, W), on the tensor's device.
    A stack of slices per sample (N, S, H, W) gives (N, 3·S, H, W): the windows of each slice in turn."""
    import torch

    if hu.dim() == 4:
        return torch.cat([channels_torch(hu[:, s], config) for s in range(hu.shape[1])], dim=1)
    parts = []
    for w in CHANNEL_CONFIGS[config]:
        lo, hi = WINDOWS[w]
        parts.append(((hu - lo) / (hi - lo)).clamp_(0.0, 1.0))
    return torch.stack(parts, dim=1)


def neighbour_offset(slice_mm: float, context_mm: float) -> int:
    """How many slices away the neighbours context_mm above and below lie (at least one)."""
    return max(1, int(round(context_mm / max(float(slice_mm), 1e-3))))


def with_neighbours(hu: np.ndarray, ks, offset: int) -> np.ndarray:
    """(len(ks), 3, H, W): slices k − offset, k, k + offset of the stack hu (K, H, W) for each k in ks.
    Past the first or last slice, and for a single slice, the slice itself stands in for its neighbour."""
    ks = np.asarray(ks, int)
    last = len(hu) - 1
    below, above = np.clip(ks - offset, 0, last), np.clip(ks + offset, 0, last)
    return np.stack([hu[below], hu[ks], hu[above]], axis=1)


def slices_in_context(hu: np.ndarray, ks, slice_mm: float, context_mm: float) -> np.ndarray:
    """What the U-Net reads of slices ks of the stack hu (K, H, W): (n, H, W) for a one-slice model
    (context_mm 0), (n, 3, H, W) with the neighbours context_mm away for a 2.5D one."""
    if not context_mm:
        return hu[np.asarray(ks, int)]
    return with_neighbours(hu, ks, neighbour_offset(slice_mm, context_mm))


# --- masks ---------------------------------------------------------------------------------------
def head_mask(hu: np.ndarray, threshold: float = -300.0) -> np.ndarray:
    """Everything of the head: the largest soft-tissue-or-denser component, holes filled per slice."""
    body = hu > threshold
    body = ndimage.binary_opening(body, structure=np.ones((1, 3, 3), bool))
    labels, n = ndimage.label(body)
    if n == 0:
        return body
    sizes = ndimage.sum_labels(body, labels, index=np.arange(1, n + 1))
    keep = labels == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in keep])


def brain_mask(hu: np.ndarray, head: Optional[np.ndarray] = None) -> np.ndarray:
    """Intracranial space: what the skull encloses, per axial slice, without the bone itself."""
    head = head_mask(hu) if head is None else head
    bone = (hu > 250) & head
    bone = ndimage.binary_closing(bone, structure=np.ones((1, 5, 5), bool))
    inside = np.stack([ndimage.binary_fill_holes(s) for s in bone]) & ~bone
    return inside & (hu > -100) & (hu < 250)


# --- resampling ----------------------------------------------------------------------------------
def resample(volume: CTVolume, ijk_to_ras: np.ndarray, shape: Sequence[int], array=None, linear=True,
             default=-1000.0, rotation_ras: Optional[np.ndarray] = None, center_ras=None) -> np.ndarray:
    """Sample `array` (default HU) of `volume` on another grid (ijk_to_ras, shape (k, j, i)).

    With `rotation_ras` R about `center_ras` c, output point q reads the input at R^T (q − c) + c,
    i.e. the output grid sees the head rotated by R.
    """
    import SimpleITK as sitk

    src = volume.to_sitk(volume.hu if array is None else array)
    ref = sitk.Image([int(shape[2]), int(shape[1]), int(shape[0])], src.GetPixelID())
    m = LPS_TO_RAS @ np.asarray(ijk_to_ras, float)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    ref.SetSpacing(tuple(float(s) for s in spacing))
    ref.SetOrigin(tuple(float(v) for v in m[:3, 3]))
    ref.SetDirection(tuple(float(v) for v in (m[:3, :3] / spacing).ravel()))
    transform = sitk.Transform()
    if rotation_ras is not None:
        f = np.diag([-1.0, -1.0, 1.0])
        t = sitk.AffineTransform(3)
        t.SetMatrix(tuple(float(v) for v in (f @ np.asarray(rotation_ras).T @ f).ravel()))
        t.SetCenter(tuple(float(v) for v in f @ np.asarray(center_ras, float)))
        transform = t
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = sitk.Resample(src, ref, transform, interp, float(default), src.GetPixelID())
    return sitk.GetArrayFromImage(out)


def resample_spacing(volume: CTVolume, spacing: Sequence[float], linear=True) -> CTVolume:
    """Resample to another voxel size keeping orientation and physical extent (voxel edges)."""
    old_sp = volume.spacing
    k, j, i = volume.shape
    extent = np.array([i, j, k]) * old_sp
    new_n = np.maximum(1, np.round(extent / np.asarray(spacing, float)).astype(int))
    new_sp = extent / new_n
    m = volume.ijk_to_ras.copy()
    d = volume.direction_ras
    m[:3, :3] = d @ np.diag(new_sp)
    # voxel (0,0,0) edge stays where it was: centre moves by half the difference of spacings
    m[:3, 3] = volume.ijk_to_ras[:3, 3] + d @ ((new_sp - old_sp) / 2.0)
    arr = resample(volume, m, (new_n[2], new_n[1], new_n[0]), linear=linear)
    return CTVolume(arr.astype(np.float32), m, name=volume.name)


# --- alignment -----------------------------------------------------------------------------------
@dataclass
class Alignment:
    """Rotation R (RAS) about the head centre c that makes the mid-sagittal plane x = c_x."""
    rotation: np.ndarray
    center: np.ndarray
    yaw_deg: float = 0.0
    roll_deg: float = 0.0
    pitch_deg: float = 0.0

    def to_aligned(self, ras):
        return (np.atleast_2d(ras) - self.center) @ self.rotation.T + self.center

    def to_original(self, ras):
        return (np.atleast_2d(ras) - self.center) @ self.rotation + self.center


def rotation_matrix(yaw_deg=0.0, roll_deg=0.0, pitch_deg=0.0):
    """R = Rz(yaw) · Ry(roll) · Rx(pitch) in RAS (yaw about S, roll about A, pitch about R)."""
    y, r, p = np.radians([yaw_deg, roll_deg, pitch_deg])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rz @ ry @ rx


def estimate_alignment(volume: CTVolume, head: Optional[np.ndarray] = None) -> Alignment:
    """Mid-sagittal plane of the head: yaw from the skull's long axis, roll from the midline's drift.

    Yaw: in every axial slice that cuts the cranium, the principal long axis of the intracranial
    region is the A-P direction. Roll: heads are nearly spherical, so section centroids barely move
    when the head rolls, but the midline does; after undoing yaw, each slice's midline is found by
    mirror symmetry of its internal structures (ventricles, falx, deep grey matter: high-pass brain
    window inside the central 45 mm), and a line fitted through those midlines against S gives roll.
    Pitch is not estimated (it needs landmarks such as the orbitomeatal line): `pitch_deg` stays 0.
    """
    hu = volume.hu
    head = head_mask(hu) if head is None else head
    inside = brain_mask(hu, head)
    angles, cents, areas = [], [], []
    sp = volume.spacing
    for k in range(hu.shape[0]):
        jj, ii = np.nonzero(inside[k])
        if len(jj) * sp[0] * sp[1] < 2500.0:  # < 25 cm²: skull base or vertex
            continue
        ras = volume.ijk_to_ras_points(np.column_stack([ii, jj, np.full(len(ii), k)]))
        xy = ras[:, :2]
        c = xy.mean(axis=0)
        w, v = np.linalg.eigh(np.cov((xy - c).T))
        if w[1] < 1.05 * w[0]:
            continue  # nearly circular: no usable axis
        major = v[:, 1] if v[1, 1] >= 0 else -v[:, 1]  # pointing anterior
        angles.append(np.degrees(np.arctan2(-major[0], major[1])))
        cents.append([c[0], c[1], ras[:, 2].mean()])
        areas.append(len(jj))
    center = volume.ijk_to_ras_points((np.array(hu.shape[::-1]) - 1) / 2.0)[0]
    if len(angles) < 3:
        return Alignment(np.eye(3), center)
    cents = np.array(cents)
    yaw = float(np.median(angles))
    center = np.array([np.median(cents[:, 0]), np.median(cents[:, 1]), float(np.median(cents[:, 2]))])
    # an axial cut of a rolled head pairs left and right structures from different heights, which
    # under-reads the tilt; re-measuring on the partly corrected head converges in a few rounds
    roll = 0.0
    for _ in range(4):
        residual, center_x = _roll_from_midlines(volume, yaw, roll, center, cents[:, 2])
        roll += residual
        center[0] = center_x
        if abs(residual) < 0.3:
            break
    rot = np.linalg.inv(rotation_matrix(yaw_deg=yaw, roll_deg=roll))
    return Alignment(rot, center, yaw_deg=yaw, roll_deg=roll)


def _roll_from_midlines(volume: CTVolume, yaw: float, roll: float, center: np.ndarray, z_values):
    """(residual roll in degrees, midline x at the centre height) from per-slice mirror symmetry of
    the head with `yaw` and `roll` already undone."""
    px = 1.5
    n = 96  # 144 mm wide window around the head centre
    zs = np.asarray(z_values, float)
    dz = float(volume.spacing[2])
    n_z = int(round((zs.max() - zs.min()) / dz)) + 1
    m = np.eye(4)
    m[:3, :3] = np.diag([px, px, dz])
    m[:3, 3] = np.array([center[0], center[1], zs.min()]) - np.array([px, px, 0]) * (n - 1) / 2.0
    rot = rotation_matrix(yaw_deg=yaw, roll_deg=roll)
    slab = resample(volume, m, (n_z, n, n), rotation_ras=np.linalg.inv(rot), center_ras=center)  # one call
    mids, heights = [], []
    for k, sl in enumerate(slab):
        z = zs.min() + k * dz
        if np.abs(zs - z).min() > 0.5 * dz:
            continue  # only the slices that cut the cranium (as chosen for yaw)
        bone = ndimage.binary_closing(sl > 250, structure=np.ones((3, 3), bool))
        cranium = ndimage.binary_fill_holes(bone) & ~bone
        core = ndimage.binary_erosion(cranium, iterations=int(10.0 / px))  # no outline edges
        if core.sum() * px * px < 1500.0:
            continue
        img = window(sl, "brain")
        img = (img - ndimage.gaussian_filter(img, 3.0)) * ndimage.gaussian_filter(core.astype(np.float32), 2.0)
        spec = np.fft.rfft(img, axis=1)
        flipped = np.fft.rfft(img[:, ::-1], axis=1)
        corr = np.fft.irfft((spec * np.conj(flipped)).sum(axis=0), n=n)
        corr = np.roll(corr, n // 2)
        s = int(np.argmax(corr))
        if 0 < s < n - 1:  # parabolic sub-pixel peak
            d = corr[s - 1] - 2 * corr[s] + corr[s + 1]
            s = s + (0.5 * (corr[s - 1] - corr[s + 1]) / d if d != 0 else 0.0)
        # image columns run along +x (R) here; symmetric about x0 ⇔ correlation peak at 2·x0
        mids.append((s - n // 2) * px / 2.0)
        heights.append(z)
    if len(mids) < 3:
        return 0.0, float(center[0])
    mids, heights = np.array(mids), np.array(heights)
    keep = np.abs(mids - np.median(mids)) <= max(3.0, 2.5 * np.median(np.abs(mids - np.median(mids))))
    if keep.sum() < 3 or np.ptp(heights[keep]) < 20:
        return 0.0, float(center[0])
    slope, intercept = np.polyfit(heights[keep] - center[2], mids[keep], 1)
    # midline offsets are in the un-yawed frame; x offset at the centre height moves the centre
    offset = rot @ np.array([intercept, 0.0, 0.0])
    return float(np.degrees(np.arctan(slope))), float(center[0] + offset[0])


def aligned_grid(alignment: Alignment, spacing=(2.0, 2.0, 5.0), size=(128, 128, 40)):
    """IJK→RAS and shape (k, j, i) of an aligned grid of `size` (i, j, k) centred on the head.

    Axes as in a DICOM axial series: i → left, j → posterior, k → superior.
    """
    sp = np.asarray(spacing, float)
    n = np.asarray(size, int)
    d = np.diag([-1.0, -1.0, 1.0])  # i → left, j → posterior, k → superior (LPS-like axial)
    m = np.eye(4)
    m[:3, :3] = d @ np.diag(sp)
    m[:3, 3] = alignment.center - d @ (sp * (n - 1) / 2.0)
    return m, (int(n[2]), int(n[1]), int(n[0]))


# --- axial head crop -------------------------------------------------------------------------------
@dataclass
class HeadCrop:
    """A square in-plane window around the head, the same for every slice of a scan."""
    j0: int
    i0: int
    side: int  # pixels of the native grid (may extend past the image: padded with air)

    def _window(self, h, w):
        """(native slices, crop slices) of the part of the crop window that lies inside an h × w image."""
        js, je = max(0, self.j0), min(h, self.j0 + self.side)
        is_, ie = max(0, self.i0), min(w, self.i0 + self.side)
        return (np.s_[js:je], np.s_[is_:ie]), (np.s_[js - self.j0:je - self.j0], np.s_[is_ - self.i0:ie - self.i0])

    def _padded(self, array, fill):
        """(k, j, i) → (k, side, side) window of the native grid, `fill` outside the image."""
        k, h, w = array.shape
        (nj, ni), (cj, ci) = self._window(h, w)
        pad = np.full((k, self.side, self.side), fill, array.dtype)
        pad[:, cj, ci] = array[:, nj, ni]
        return pad

    def extract(self, hu: np.ndarray, size: int):
        """(k, j, i) HU → (k, size, size) float32 crop, resampled with area averaging."""
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(self._padded(np.asarray(hu, np.float32), -1000.0))[:, None]
        mode = "area" if self.side >= size else "bilinear"
        out = F.interpolate(t, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        return out[:, 0].numpy()

    def extract_labels(self, labels: np.ndarray, size: int):
        """Nearest-neighbour crop of an integer label map (k, j, i) → (k, size, size)."""
        pad = self._padded(labels, 0)
        idx = ((np.arange(size) + 0.5) * self.side / size).astype(int)
        return pad[:, idx][:, :, idx]

    def paste(self, maps: np.ndarray, shape, fill=0.0, mode="bilinear"):
        """(k, n, n) maps on the crop grid → (k, h, w) on the native grid ("bilinear" for
        probabilities, "nearest" for class indices)."""
        import torch
        import torch.nn.functional as F

        k, h, w = shape
        t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
        kw = {"align_corners": False} if mode == "bilinear" else {}
        up = F.interpolate(t, size=(self.side, self.side), mode=mode, **kw)[:, 0].numpy()
        out = np.full((k, h, w), fill, np.float32)
        (nj, ni), (cj, ci) = self._window(h, w)
        out[:, nj, ni] = up[:, cj, ci]
        return out

    def crop_to_native(self, rows, cols, size):
        """Crop-grid pixel centres (row, col) → native (j, i) continuous indices."""
        scale = self.side / float(size)
        return self.j0 + (np.asarray(rows) + 0.5) * scale - 0.5, self.i0 + (np.asarray(cols) + 0.5) * scale - 0.5


def head_crop(head: np.ndarray, margin: float = 0.06) -> HeadCrop:
    """Square around the union of the head mask over all slices, with a small margin."""
    proj = head.any(axis=0)
    if not proj.any():
        h, w = proj.shape
        side = max(h, w)
        return HeadCrop((h - side) // 2, (w - side) // 2, side)
    jj, ii = np.nonzero(proj)
    j0, j1, i0, i1 = jj.min(), jj.max() + 1, ii.min(), ii.max() + 1
    side = int(round(max(j1 - j0, i1 - i0) * (1 + 2 * margin)))
    cj, ci = (j0 + j1) / 2.0, (i0 + i1) / 2.0
    return HeadCrop(int(round(cj - side / 2.0)), int(round(ci - side / 2.0)), max(side, 16))


# --- the grids the networks read ---------------------------------------------------------------
AXIAL_CROP_SIZE = 256  # head crop for the U-Net; the MIL network reads it at half size
CASCADE_SPACING = (2.0, 2.0, 5.0)  # mm: 5 mm axial slices as in paper 000, 2 mm in-plane
CASCADE_SIZE = (128, 128, 40)  # (i, j, k): 256 × 256 × 200 mm around the head centre


def crop_at(hu256, size: int) -> np.ndarray:
    """The 256 head crop as a network reads it at size × size: itself (256) or half_crop (128)."""
    if size not in (AXIAL_CROP_SIZE, AXIAL_CROP_SIZE // 2):
        raise ValueError(f"a head crop is read at {AXIAL_CROP_SIZE} or {AXIAL_CROP_SIZE // 2} pixels, not {size}")
    return np.asarray(hu256, np.float32) if size == AXIAL_CROP_SIZE else half_crop(hu256)


def half_crop(hu256) -> np.ndarray:
    """The 256 head crop mean-pooled 2×2 to 128: what the MIL network and the U-Net's gate read.
    Any leading axes (slices, or slices × neighbours) are kept."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(hu256, np.float32))
    pooled = F.avg_pool2d(t.reshape(-1, 1, *t.shape[-2:]), 2)
    return pooled.reshape(*t.shape[:-2], *pooled.shape[-2:]).numpy()


def cascade_grid(volume: CTVolume, alignment: Alignment, array=None, linear=True):
    """The aligned 5 mm cascade grid: (HU or labels (k, j, i), its IJK→RAS matrix).

    HU of thinner axial input slices are first averaged over 5 mm slabs (`slab_average`), so that a
    5 mm slice of the grid is what a 5 mm reconstruction would show, not one thin slice every 5 mm
    (a series stacked along another axis is resampled as it is)."""
    m, shape = aligned_grid(alignment, CASCADE_SPACING, CASCADE_SIZE)
    default = -1000.0 if array is None else 0
    if array is None and abs(volume.direction_ras[2, 2]) > 0.7:  # slices stacked along S-I
        array = slab_average(volume.hu, float(volume.spacing[2]), CASCADE_SPACING[2])
    out = resample(volume, m, shape, array=array, linear=linear, default=default,
                   rotation_ras=alignment.rotation, center_ras=alignment.center)
    return out, m


def slab_average(hu: np.ndarray, slice_mm: float, slab_mm: float) -> np.ndarray:
    """Each axial slice replaced by the mean of the slab_mm around it (the slices unchanged when they
    are already about that thick): thin slices sampled every 5 mm would keep their noise (σ ×2.9 for
    0.6 mm slices) and miss what lies between the samples."""
    n = int(round(slab_mm / max(slice_mm, 1e-3)))
    if n < 2 or hu.shape[0] < 2:
        return hu
    return ndimage.uniform_filter1d(np.asarray(hu, np.float32), size=n, axis=0, mode="nearest")


class PreparedScan:
    """One input volume's shared preprocessing, computed once and reused by every method in a run:
    head mask, head crop (256 and 128), brain mask, alignment and the cascade grid."""

    def __init__(self, volume: CTVolume):
        self.volume = volume
        self._cache = {}

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def is_2d(self):
        return self.volume.shape[0] < 3

    @property
    def head(self) -> np.ndarray:
        return self._get("head", lambda: head_mask(self.volume.hu))

    @property
    def crop(self) -> HeadCrop:
        return self._get("crop", lambda: head_crop(self.head))

    def crop_hu(self, size: int = AXIAL_CROP_SIZE) -> np.ndarray:
        """(k, size, size) HU of the head crop; 128 is the 256 crop mean-pooled 2×2 (as in training)."""
        if size == AXIAL_CROP_SIZE:
            return self._get("crop256", lambda: self.crop.extract(self.volume.hu, AXIAL_CROP_SIZE))
        if size == AXIAL_CROP_SIZE // 2:
            return self._get("crop128", lambda: half_crop(self.crop_hu(AXIAL_CROP_SIZE)))
        return self._get(f"crop{size}", lambda: self.crop.extract(self.volume.hu, size))

    @property
    def alignment(self) -> Alignment:
        return self._get("alignment", lambda: estimate_alignment(self.volume, self.head))

    def cascade_grid(self):
        """(HU on the aligned cascade grid (k, j, i), its IJK→RAS)."""
        return self._get("cascade", lambda: cascade_grid(self.volume, self.alignment))
