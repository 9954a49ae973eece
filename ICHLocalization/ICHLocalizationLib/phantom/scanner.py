"""The phantom's scanner: the head's pose on an axial grid, sub-slice sampling (partial volume),
in-plane blur, correlated noise, beam hardening at the skull base, and the padding that real DICOM
stores outside the reconstruction circle."""
import numpy as np
from scipy import ndimage

from .shapes import Field

PADDING_HU = -3024


class Scanner:
    """One acquisition drawn from `rng`: matrix, pixel size, slices, pose, table offset, noise."""

    def __init__(self, rng, size: int, pixel_mm: float, slice_thickness: float, slices, max_pose_deg: float, pose):
        self.rng = rng
        self.size, self.pixel, self.thickness = int(size), float(pixel_mm), float(slice_thickness)
        self.slices = int(slices) if slices else int(round(160.0 / self.thickness))
        self.pose = {"yaw": float(rng.uniform(-max_pose_deg, max_pose_deg)),
                     "roll": float(rng.uniform(-max_pose_deg / 2, max_pose_deg / 2)),
                     "pitch": float(rng.uniform(-max_pose_deg, max_pose_deg))}
        if pose is not None:
            self.pose = {"yaw": 0.0, "roll": 0.0, "pitch": 0.0, **{k: float(v) for k, v in pose.items()}}
        self.offset = rng.uniform(-8, 8, 3) * np.array([1, 1, 0.5])
        self.noise_sd = rng.uniform(2.5, 4.0) * np.sqrt(5.0 / max(self.thickness, 0.5))

    def grid(self):
        """IJK→RAS of the scanner grid: axial, LPS-identity like a DICOM head series."""
        n, p, t = self.size, self.pixel, self.thickness
        m = np.diag([-p, -p, t, 1.0])
        m[:3, 3] = self.offset - np.array([-p, -p, t]) * (np.array([n, n, self.slices]) - 1) / 2.0
        return m

    def scan(self, render, n_lesions: int, reach_mm: float, skull_base_z: float, air_hu: float):
        """(HU, lesion id mask) of the head that render(Field) → (HU, lesion fractions) draws; the
        head reaches at most reach_mm from its centre (air_hu beyond); beam hardening streaks at
        skull_base_z (mm in the head frame)."""
        fct = 2 if self.size >= 384 else 1  # anatomy at half resolution in-plane: the blur hides it
        hu_lo, frac_lo = self._sample(render, n_lesions, reach_mm, fct, air_hu)
        hu = self._degrade(upsample(hu_lo, fct), skull_base_z)
        return hu, _lesion_mask(frac_lo, fct, hu.shape)

    def _sample(self, render, n_lesions, reach_mm, fct, air_hu):
        """Average of three sub-slices per slice (partial volume) on the grid, `fct` times coarser in-plane."""
        from ..preprocessing import rotation_matrix

        m, n_lo, p_lo = self.grid(), self.size // fct, self.pixel * fct
        m_lo = m.copy()
        m_lo[:2, :2] *= fct
        m_lo[:2, 3] += (np.array([-self.pixel, -self.pixel]) * (fct - 1) / 2.0)
        inv = rotation_matrix(self.pose["yaw"], self.pose["roll"], self.pose["pitch"]).T  # world → head frame
        nsub = 3 if self.thickness >= 2.0 else 1
        offsets = (np.arange(nsub) - (nsub - 1) / 2.0) / nsub
        hu_lo = np.full((self.slices, n_lo, n_lo), air_hu, np.float32)
        frac_lo = np.zeros((n_lesions, self.slices, n_lo, n_lo), np.float32)
        # only the rows/columns the head can reach are drawn; the rest is air
        ctr = np.linalg.solve(m_lo[:2, :2], self.offset[:2] - m_lo[:2, 3])  # (i, j) of the head centre
        lo_i, hi_i = (np.clip([ctr[0] - reach_mm / p_lo, ctr[0] + reach_mm / p_lo], 0, n_lo)).astype(int)
        lo_j, hi_j = (np.clip([ctr[1] - reach_mm / p_lo, ctr[1] + reach_mm / p_lo], 0, n_lo)).astype(int)
        jj, ii = np.mgrid[lo_j:hi_j, lo_i:hi_i].astype(np.float32)
        wx = m_lo[0, 0] * ii + m_lo[0, 3] - self.offset[0]
        wy = m_lo[1, 1] * jj + m_lo[1, 3] - self.offset[1]
        for k in range(self.slices):
            acc = np.zeros(ii.shape, np.float32)
            facc = np.zeros((n_lesions,) + ii.shape, np.float32)
            for off in offsets:
                wz = np.float32(m[2, 2] * (k + off) + m[2, 3] - self.offset[2])
                x = inv[0, 0] * wx + inv[0, 1] * wy + inv[0, 2] * wz
                y = inv[1, 0] * wx + inv[1, 1] * wy + inv[1, 2] * wz
                z = inv[2, 0] * wx + inv[2, 1] * wy + inv[2, 2] * wz
                h, lf = render(Field(x, y, z, p_lo))
                acc += h
                facc += lf
            hu_lo[k, lo_j:hi_j, lo_i:hi_i] = acc / nsub
            frac_lo[:, k, lo_j:hi_j, lo_i:hi_i] = facc / nsub
        return hu_lo, frac_lo

    def _degrade(self, hu, skull_base_z):
        """Reconstruction blur, correlated noise, a beam-hardening streak band, padding outside the circle."""
        rng = self.rng
        blur = 0.55 / self.pixel
        hu = ndimage.gaussian_filter(hu, sigma=(0, blur, blur), truncate=3.0)
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=(0, 0.7, 0.7), truncate=2.5)
        noise *= self.noise_sd / max(float(noise.std()), 1e-6)
        head = hu > -500
        hu = hu + noise * np.where(head, 1.0, 0.6)
        # beam hardening near the skull base: a dark streak band between the petrous bones
        k_n, n, _ = hu.shape
        z_world = self.grid()[2, 2] * np.arange(k_n) + self.grid()[2, 3] - self.offset[2]
        weight = np.exp(-((z_world - skull_base_z) / 10.0) ** 2).astype(np.float32)
        if weight.max() > 0.05:
            jj = np.arange(n, dtype=np.float32)[:, None]
            ii = np.arange(n, dtype=np.float32)[None, :]
            streak = (np.sin(0.09 * (ii * 0.8 + jj * 0.6)) * np.sin(0.05 * (ii - jj))).astype(np.float32)
            hu -= (12.0 * weight[:, None, None] * np.abs(streak)[None] * head).astype(np.float32)
        c = (n - 1) / 2.0
        rr = np.hypot(*np.meshgrid(np.arange(n) - c, np.arange(n) - c))
        hu[:, rr > n / 2.0] = PADDING_HU
        return np.round(hu).astype(np.float32)


def _lesion_mask(frac_lo, fct, shape):
    """Lesion id per voxel (1-based, in drawing order) where its blood fraction is ≥ 0.5."""
    mask = np.zeros(shape, np.uint8)
    n_lo = frac_lo.shape[-1]
    for idx in range(len(frac_lo)):
        nz = np.argwhere(frac_lo[idx] > 0)
        if not len(nz):
            continue
        (k0, j0, i0), (k1, j1, i1) = nz.min(axis=0), nz.max(axis=0) + 1
        j0, i0 = max(j0 - 1, 0), max(i0 - 1, 0)
        j1, i1 = min(j1 + 1, n_lo), min(i1 + 1, n_lo)
        up = upsample(frac_lo[idx, k0:k1, j0:j1, i0:i1], fct)
        view = mask[k0:k1, j0 * fct:j1 * fct, i0 * fct:i1 * fct]
        view[up >= 0.5] = idx + 1
    return mask


def upsample(arr, fct):
    """Linear upsampling in-plane by an integer factor, pixel edges kept (grid mode)."""
    if fct == 1:
        return arr
    return ndimage.zoom(arr, (1, fct, fct), order=1, grid_mode=True, mode="nearest").astype(np.float32)
