"""Synthetic non-contrast head CT with known bleeds: our sample data, training set and test oracle.

Anatomy is drawn analytically in a head frame (x → R, y → A, z → S, mm, origin at the brain centre)
and sampled through a random pose on a scanner grid: soft edges of one pixel plus sub-slice
averaging give partial volume; in-plane blur and correlated noise imitate reconstruction; padding
outside the reconstruction circle is stored like real DICOM (−3024 HU). Every bleed is rendered as a
blood fraction per voxel; a voxel belongs to a lesion in `truth_mask` when that fraction is ≥ 0.5.

Console script `ich-phantom --seed N --out DIR [--format nifti|dicom|nrrd] [--slice-thickness MM]
[--subtypes IPH,SDH,…|none]` writes ct + truth_mask + truth.json (design "File contracts").
"""
import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import ndimage

from .findings import SUBTYPES
from .volume import CTVolume, box_from_mask_ras

RESERVED_SEEDS = range(9001, 9011)  # acceptance checks only: never train or tune on these
PADDING_HU = -3024

# tissue HU (mean); each phantom draws its own values around them. "holder" (a head holder, not drawn
# yet) must stay: its random draw keeps every existing seed's phantom unchanged.
HU = {"air": -1000.0, "fat": -90.0, "scalp": 35.0, "bone": 1400.0, "diploe": 550.0, "csf": 6.0,
      "grey": 39.0, "white": 31.0, "deep_grey": 37.0, "falx": 55.0, "muscle": 45.0, "globe": 12.0,
      "calcification": 220.0, "holder": 80.0}
BLOOD_HU = {"acute": (50.0, 76.0), "subacute": (32.0, 45.0), "chronic": (8.0, 22.0)}


@dataclass
class Lesion:
    id: int
    subtype: str
    params: Dict[str, object]
    acuity: str = "acute"
    blood_hu: float = 70.0


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


class _Field:
    """Points of one sub-slice in the head frame, with helpers for soft-edged shapes."""

    def __init__(self, x, y, z, edge):
        self.x, self.y, self.z, self.edge = x, y, z, edge

    def soft(self, signed_mm):
        """Occupancy from a signed distance (negative inside), linear over one pixel."""
        return np.clip(0.5 - signed_mm / self.edge, 0.0, 1.0)

    def ellipsoid_sd(self, c, r, rot=None):
        dx, dy, dz = self.x - c[0], self.y - c[1], self.z - c[2]
        if rot is not None:
            dx, dy, dz = (rot[0, 0] * dx + rot[1, 0] * dy + rot[2, 0] * dz,
                          rot[0, 1] * dx + rot[1, 1] * dy + rot[2, 1] * dz,
                          rot[0, 2] * dx + rot[1, 2] * dy + rot[2, 2] * dz)
        rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2) + 1e-6
        dist = np.sqrt(dx * dx + dy * dy + dz * dz)
        return (rho - 1.0) * dist / rho, rho

    def ellipsoid(self, c, r, rot=None):
        return self.soft(self.ellipsoid_sd(c, r, rot)[0])


def _rand_rotation(rng, max_deg):
    from .preprocessing import rotation_matrix

    return rotation_matrix(*rng.uniform(-max_deg, max_deg, 3))


class PhantomGenerator:
    """Draws one phantom head from a seed; `generate()` renders it on a scanner grid."""

    def __init__(self, seed: int, subtypes: Optional[Sequence[str]] = None, size: int = 512,
                 pixel_mm: Optional[float] = None, slice_thickness: float = 5.0, slices: Optional[int] = None,
                 acuity: str = "acute", max_pose_deg: float = 12.0, pose: Optional[Dict[str, float]] = None):
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        rng = self.rng
        self.size = int(size)
        self.pixel = float(pixel_mm) if pixel_mm else float(rng.uniform(0.40, 0.50)) * 512.0 / self.size
        self.thickness = float(slice_thickness)
        self.slices = int(slices) if slices else int(round(160.0 / self.thickness))
        self.acuity = acuity
        # head shape and age-like variation
        self.atrophy = float(rng.beta(1.5, 3.0))
        a, b, c = rng.uniform(60, 68), rng.uniform(76, 86), rng.uniform(60, 68)
        self.brain_r = np.array([a, b, c])
        self.csf_gap = 1.2 + 3.0 * self.atrophy
        self.inner_r = self.brain_r + self.csf_gap
        self.skull_t = rng.uniform(5.5, 8.5)
        self.outer_r = self.inner_r + self.skull_t
        self.scalp_t = rng.uniform(4.0, 7.0)
        self.head_r = self.outer_r + self.scalp_t
        self.hu = {k: v + (rng.normal(0, 2.0) if abs(v) < 100 else 0.0) for k, v in HU.items()}
        self.hu["white"] = min(self.hu["white"], self.hu["grey"] - 5.0)
        # gyral folding field: three random plane waves, wavelength ~22–30 mm
        self.waves = [(self._unit() * 2 * np.pi / rng.uniform(22, 30), rng.uniform(0, 2 * np.pi)) for _ in range(3)]
        self.sulcus_w = 0.5 + 1.5 * self.atrophy
        self.vent_scale = 1.0 + 0.9 * self.atrophy
        self.has_pineal_calc = rng.random() < 0.7
        self.has_plexus_calc = rng.random() < 0.5
        self.pose = {"yaw": float(rng.uniform(-max_pose_deg, max_pose_deg)),
                     "roll": float(rng.uniform(-max_pose_deg / 2, max_pose_deg / 2)),
                     "pitch": float(rng.uniform(-max_pose_deg, max_pose_deg))}
        if pose is not None:
            self.pose = {"yaw": 0.0, "roll": 0.0, "pitch": 0.0, **{k: float(v) for k, v in pose.items()}}
        self.offset = rng.uniform(-8, 8, 3) * np.array([1, 1, 0.5])
        self.noise_sd = rng.uniform(2.5, 4.0) * np.sqrt(5.0 / max(self.thickness, 0.5))
        self.lesions = self._draw_lesions(subtypes)
        self.shift = self._midline_shift()

    def _unit(self):
        v = self.rng.normal(size=3)
        return v / np.linalg.norm(v)

    # --- lesion drawing ------------------------------------------------------------------------
    def _draw_lesions(self, subtypes):
        rng = self.rng
        if subtypes is None:
            if rng.random() < 0.2:
                chosen = []
            else:
                n = rng.choice([1, 1, 2, 2, 3])
                chosen = list(rng.choice(SUBTYPES, size=n, replace=False, p=[0.3, 0.15, 0.2, 0.25, 0.1]))
        else:
            chosen = list(subtypes)
        lesions = []
        for n, st in enumerate(chosen, start=1):
            lo, hi = BLOOD_HU[self.acuity]
            lesions.append(Lesion(n, st, getattr(self, "_draw_" + st.lower())(), self.acuity, float(rng.uniform(lo, hi))))
        return lesions

    def _convexity_direction(self, elev=(-15, 55)):
        az = self.rng.uniform(0, 2 * np.pi)
        el = np.radians(self.rng.uniform(*elev))
        return np.array([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)])

    def _draw_edh(self):
        p = {"dir": self._convexity_direction((-5, 45)), "half_angle": np.radians(self.rng.uniform(18, 30)),
             "thickness": self.rng.uniform(9, 20)}
        # a skull fracture over most epidural bleeds, drawn from its own stream so that adding it did
        # not change any other random draw of existing seeds
        frac_rng = np.random.default_rng([self.seed, 17])
        if frac_rng.random() < 0.75:
            normal = np.cross(p["dir"], frac_rng.normal(size=3))
            p["fracture_normal"] = normal / np.linalg.norm(normal)
        return p

    def _draw_sdh(self):
        if self.rng.random() < 0.2:
            return {"falx": True, "side": float(self.rng.choice([-1, 1])), "y0": self.rng.uniform(-30, 30),
                    "half_len": self.rng.uniform(20, 35), "z0": self.rng.uniform(10, 30), "thickness": self.rng.uniform(3, 6)}
        return {"falx": False, "dir": self._convexity_direction((-5, 50)),
                "half_angle": np.radians(self.rng.uniform(35, 60)), "thickness": self.rng.uniform(5, 14)}

    def _draw_sah(self):
        basal = self.rng.random() < 0.35
        if basal:
            center = np.array([self.rng.uniform(-10, 10), self.rng.uniform(0, 15), -0.38 * self.brain_r[2]])
            radius = self.rng.uniform(22, 32)
        else:
            d = self._convexity_direction((0, 50))
            center = d * (self.brain_r - 8)
            radius = self.rng.uniform(22, 35)
        return {"center": center, "radius": radius, "basal": basal}

    def _draw_iph(self):
        rng = self.rng
        site = rng.choice(["basal_ganglia", "thalamus", "lobar", "cerebellum"], p=[0.4, 0.15, 0.35, 0.1])
        side = rng.choice([-1, 1])
        if site == "basal_ganglia":
            c = np.array([side * rng.uniform(18, 26), rng.uniform(-2, 10), rng.uniform(-2, 12)])
        elif site == "thalamus":
            c = np.array([side * rng.uniform(8, 14), rng.uniform(-16, -8), rng.uniform(2, 12)])
        elif site == "cerebellum":
            c = np.array([side * rng.uniform(12, 24), rng.uniform(-50, -38), -0.6 * self.brain_r[2]])
        else:
            d = self._convexity_direction((0, 50))
            c = d * (self.brain_r - rng.uniform(18, 26))
        big = 14 if site != "cerebellum" else 10
        r = rng.uniform(6, big, 3) * np.array([1, 1.2, 0.9])
        return {"center": c, "radii": r, "rot": _rand_rotation(rng, 40), "site": str(site),
                "lobes": rng.normal(0, 0.12, 4), "edema": rng.uniform(2, 5)}

    def _draw_ivh(self):
        return {"level": self.rng.uniform(-0.55, 0.1), "third": bool(self.rng.random() < 0.4)}

    def _midline_shift(self):
        shift = 0.0
        for les in self.lesions:
            p = les.params
            if les.subtype in ("EDH", "SDH") and not p.get("falx"):
                mm = max(0.0, p["thickness"] - 8) * 0.6
                shift -= np.sign(p["dir"][0]) * mm
            elif les.subtype == "IPH":
                mm = max(0.0, float(np.prod(p["radii"])) ** (1 / 3) - 10) * 0.5
                shift -= np.sign(p["center"][0]) * mm
        return float(np.clip(shift, -12, 12))

    # --- rendering -----------------------------------------------------------------------------
    def grid(self):
        """IJK→RAS of the scanner grid: axial, LPS-identity like a DICOM head series."""
        n, p, t = self.size, self.pixel, self.thickness
        m = np.diag([-p, -p, t, 1.0])
        center = self.offset
        m[:3, 3] = center - np.array([-p, -p, t]) * (np.array([n, n, self.slices]) - 1) / 2.0
        return m

    def generate(self, bleeds: bool = True) -> Phantom:
        """Render the phantom. bleeds=False renders its bleed-free twin: the same head, pose, mass
        effect and scanner noise with no blood (nor edema or fracture) — a matched control slice
        for every bleed slice, so that a slice-label learner has only the blood to go by."""
        from .preprocessing import rotation_matrix

        lesions = self.lesions if bleeds else []

        m = self.grid()
        n, k_n = self.size, self.slices
        # anatomy is drawn at half resolution in-plane (the scanner blur hides it) and upsampled
        fct = 2 if n >= 384 else 1
        n_lo, p_lo = n // fct, self.pixel * fct
        m_lo = m.copy()
        m_lo[:2, :2] *= fct
        m_lo[:2, 3] += (np.array([-self.pixel, -self.pixel]) * (fct - 1) / 2.0)
        rot = rotation_matrix(self.pose["yaw"], self.pose["roll"], self.pose["pitch"])
        inv = rot.T  # world → head frame
        nsub = 3 if self.thickness >= 2.0 else 1
        offsets = (np.arange(nsub) - (nsub - 1) / 2.0) / nsub
        hu_lo = np.full((k_n, n_lo, n_lo), self.hu["air"], np.float32)
        frac_lo = np.zeros((len(lesions), k_n, n_lo, n_lo), np.float32)
        # only the rows/columns the head can reach are drawn; the rest is air
        reach = float(np.max(self.head_r)) * 1.2 + 10
        ctr = np.linalg.solve(m_lo[:2, :2], self.offset[:2] - m_lo[:2, 3])  # (i, j) of the head centre
        lo_i, hi_i = (np.clip([ctr[0] - reach / p_lo, ctr[0] + reach / p_lo], 0, n_lo)).astype(int)
        lo_j, hi_j = (np.clip([ctr[1] - reach / p_lo, ctr[1] + reach / p_lo], 0, n_lo)).astype(int)
        jj, ii = np.mgrid[lo_j:hi_j, lo_i:hi_i].astype(np.float32)
        wx = m_lo[0, 0] * ii + m_lo[0, 3] - self.offset[0]
        wy = m_lo[1, 1] * jj + m_lo[1, 3] - self.offset[1]
        for k in range(k_n):
            acc = np.zeros(ii.shape, np.float32)
            facc = np.zeros((len(lesions),) + ii.shape, np.float32)
            for off in offsets:
                wz = np.float32(m[2, 2] * (k + off) + m[2, 3] - self.offset[2])
                x = inv[0, 0] * wx + inv[0, 1] * wy + inv[0, 2] * wz
                y = inv[1, 0] * wx + inv[1, 1] * wy + inv[1, 2] * wz
                z = inv[2, 0] * wx + inv[2, 1] * wy + inv[2, 2] * wz
                h, lf = self._render(_Field(x, y, z, p_lo), lesions)
                acc += h
                facc += lf
            hu_lo[k, lo_j:hi_j, lo_i:hi_i] = acc / nsub
            frac_lo[:, k, lo_j:hi_j, lo_i:hi_i] = facc / nsub
        hu = _upsample(hu_lo, fct)
        hu = self._scanner(hu)
        mask = np.zeros(hu.shape, np.uint8)
        for idx in range(len(lesions)):
            nz = np.argwhere(frac_lo[idx] > 0)
            if not len(nz):
                continue
            (k0, j0, i0), (k1, j1, i1) = nz.min(axis=0), nz.max(axis=0) + 1
            j0, i0 = max(j0 - 1, 0), max(i0 - 1, 0)
            j1, i1 = min(j1 + 1, n_lo), min(i1 + 1, n_lo)
            up = _upsample(frac_lo[idx, k0:k1, j0:j1, i0:i1], fct)
            view = mask[k0:k1, j0 * fct:j1 * fct, i0 * fct:i1 * fct]
            view[up >= 0.5] = idx + 1
        volume = CTVolume(hu, m, name=f"phantom-{self.seed}")
        truth = self._truth_lesions(volume, mask, lesions)
        return Phantom(volume, mask, truth, self.seed, dict(self.pose), self.shift)

    def _gyral(self, f):
        g = np.zeros_like(f.x)
        for kvec, phase in self.waves:
            g += np.sin(kvec[0] * f.x + kvec[1] * f.y + kvec[2] * f.z + phase)
        kmag = np.linalg.norm(self.waves[0][0])
        return np.abs(g) / (kmag * 1.2)  # ≈ distance (mm) to the sulcal fundus surface

    def _render(self, f: _Field, lesions):
        """HU and lesion fractions of one sub-slice (before blur and noise): cranium, brain, midline
        and posterior-fossa structures, then the bleeds, each painted over what lies beneath."""
        hu = np.full(f.x.shape, self.hu["air"], np.float32)
        sd_head, _ = f.ellipsoid_sd((0, -4, -6), self.head_r * np.array([1, 1, 1.15]))
        head = f.soft(sd_head)
        if not head.any():
            return hu, np.zeros((len(lesions),) + f.x.shape, np.float32)
        hu, skull, zbase, inner = self._render_cranium(f, hu, head)
        hu, ctx = self._render_brain(f, hu, zbase, inner)
        hu = self._render_midline(f, hu, ctx)
        return self._render_bleeds(f, hu, lesions, skull, ctx)

    def _render_cranium(self, f, hu, head):
        """Scalp with its fat layer, skull with diploe, skull base and the face and neck below it."""
        H = self.hu
        hu = hu * (1 - head) + H["scalp"] * head
        sd_outer, _ = f.ellipsoid_sd((0, 0, 0), self.outer_r)
        fat = f.soft(np.abs(sd_outer - self.scalp_t * 0.5) - self.scalp_t * 0.25) * head
        hu = hu * (1 - fat) + H["fat"] * fat
        # skull base level: anterior fossa high, posterior fossa low
        zbase = self._skull_base_level(f)
        below = f.soft(f.z - zbase)  # 1 below the skull base
        # face / neck soft tissue below the cranium, within the head outline
        hu = hu * (1 - below * head) + H["muscle"] * below * head
        skull = f.soft(sd_outer) * head
        hu = hu * (1 - skull) + H["bone"] * skull
        sd_inner, rho_inner = f.ellipsoid_sd((0, 0, 0), self.inner_r)
        diploe = f.soft(np.abs(sd_inner - self.skull_t / 2.0) - self.skull_t * 0.18) * skull
        hu = hu * (1 - diploe) + H["diploe"] * diploe
        # below the cranial floor: soft tissue of the face and neck, then the floor plate and its structures
        under = f.soft(sd_inner) * f.soft(f.z - (zbase - 5.0))
        hu = hu * (1 - under) + H["muscle"] * under
        plate = f.soft(np.abs(f.z - zbase + 2.5) - 2.5) * f.soft(sd_inner + 2)
        hu = hu * (1 - plate) + H["bone"] * plate
        return self._skull_base(f, hu, zbase), skull, zbase, (sd_inner, rho_inner)

    def _render_brain(self, f, hu, zbase, inner):
        """CSF-filled intracranial space, grey matter with sulci, white matter under the cortical
        ribbon; returns what the later layers and the bleeds are placed by."""
        H = self.hu
        sd_inner, rho_inner = inner
        intra = f.soft(sd_inner) * f.soft(zbase - f.z)
        hu = hu * (1 - intra) + H["csf"] * intra
        sd_brain, _ = f.ellipsoid_sd((0, 0, 0), self.brain_r)
        brain = f.soft(sd_brain) * f.soft(zbase + self.csf_gap - f.z)
        depth = -sd_brain
        gyr = self._gyral(f)
        sulcal_depth = 15.0
        sulcus = f.soft(gyr - self.sulcus_w) * f.soft(depth - sulcal_depth) * brain
        grey = brain * (1 - sulcus)
        hu = hu * (1 - grey) + H["grey"] * grey
        # white matter: beneath the cortical ribbon, which lines the surface and every sulcus
        ribbon = np.maximum(f.soft(depth - 3.5), f.soft(gyr - self.sulcus_w - 3.0) * f.soft(depth - sulcal_depth - 3.0))
        white = brain * (1 - ribbon)
        hu = hu * (1 - white) + H["white"] * white
        xs = f.x - self.shift * f.soft(f.z + 0.3 * self.brain_r[2])  # midline structures shifted supratentorially
        ctx = {"intra": intra, "brain": brain, "sd_inner": sd_inner, "rho_inner": rho_inner, "sulcus": sulcus,
               "fs": _Field(xs, f.y, f.z, f.edge), "depth": depth}
        return hu, ctx

    def _render_midline(self, f, hu, ctx):
        """Deep grey nuclei, cerebellum under the tentorium, falx in its fissure, ventricles, cisterns
        and the physiological calcifications (look-alikes of blood); adds vent and cist to ctx."""
        H, brain, fs, depth = self.hu, ctx["brain"], ctx["fs"], ctx["depth"]
        for side in (-1, 1):
            deep = fs.ellipsoid((side * 21, 4, 6), (9, 15, 11)) + fs.ellipsoid((side * 10, -12, 8), (8, 11, 8))
            deep = np.clip(deep, 0, 1) * brain
            hu = hu * (1 - deep) + H["deep_grey"] * deep
        # tentorium and cerebellum (posterior fossa below it)
        zt = -0.28 * self.brain_r[2] - 0.18 * np.abs(f.x) + 0.15 * (f.y + 20)
        post = f.soft(f.y + 22)  # posterior of y = −22
        cereb = f.soft(f.z - zt) * post * brain
        hu = hu * (1 - cereb) + (H["grey"] - 1.0) * cereb
        tent = f.soft(np.abs(f.z - zt) - 0.6) * post * brain
        hu = hu * (1 - tent) + H["falx"] * tent
        # falx: a midline sheet from the vertex down ~40 mm, above the tentorium, in a CSF fissure
        upper = f.soft(zt + 4 - f.z) * f.soft(depth - 40) * brain
        fissure = fs.soft(np.abs(fs.x) - (0.8 + self.sulcus_w)) * upper
        hu = hu * (1 - fissure) + H["csf"] * fissure
        falx = fs.soft(np.abs(fs.x) - 0.6) * upper
        hu = hu * (1 - falx) + H["falx"] * falx
        ctx["vent"] = vent = self._ventricles(fs) * brain
        ctx["cist"] = cist = self._cisterns(f) * brain
        hu = hu * (1 - vent) + H["csf"] * vent
        hu = hu * (1 - cist) + H["csf"] * cist
        if self.has_pineal_calc:
            pc = fs.ellipsoid((0, -17, 6), (2.5, 3.0, 2.5))
            hu = hu * (1 - pc) + H["calcification"] * pc
        if self.has_plexus_calc:
            for side in (-1, 1):
                cp = fs.ellipsoid((side * 17 * self.vent_scale ** 0.3, -26, 9), (2.5, 3.5, 2.5))
                hu = hu * (1 - cp) + 0.7 * H["calcification"] * cp
        return hu

    def _render_bleeds(self, f, hu, lesions, skull, ctx):
        """Fractures first, then each bleed's blood fraction over the tissue (and its edema around)."""
        fracs = np.zeros((len(lesions),) + f.x.shape, np.float32)
        for les in lesions:
            if "fracture_normal" in les.params:
                hu = self._fracture(f, les.params, hu, skull)
        for idx, les in enumerate(lesions):
            lf, edema = getattr(self, "_render_" + les.subtype.lower())(f, les.params, ctx)
            if edema is not None:
                hu = hu - 10.0 * edema * (1 - lf)
            lf = np.clip(lf, 0, 1).astype(np.float32)
            hu = hu * (1 - lf) + les.blood_hu * lf
            fracs[idx] = lf
        return hu, fracs

    def _skull_base_level(self, f):
        """Floor of the cranial cavity: anterior fossa high, middle fossa lateral and deep, posterior lowest."""
        c = self.brain_r[2]
        anterior = 0.5 * (1 + np.tanh((f.y - 18.0) / 8.0))
        posterior = 0.5 * (1 - np.tanh((f.y + 22.0) / 8.0))
        middle = (1 - anterior) * (1 - posterior)
        lateral = np.clip((np.abs(f.x) - 12.0) / 15.0, 0, 1)
        level = anterior * 0.42 + middle * (0.55 + 0.2 * lateral) + posterior * 0.9
        return -c * level

    def _skull_base(self, f, hu, zbase):
        H = self.hu
        zb = -self.brain_r[2]
        # petrous ridges, dense, oblique
        for side in (-1, 1):
            ang = np.radians(side * 50)
            rot = np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
            pet = f.ellipsoid((side * 32, -14, 0.68 * zb), (7, 22, 6), rot)
            hu = hu * (1 - pet) + (H["bone"] + 200) * pet
            # mastoid air cells: air pockets in bone, lateral-posterior
            mast = f.ellipsoid((side * (self.outer_r[0] - 10), -22, 0.74 * zb), (8, 10, 10))
            cells = (np.sin(f.x * 1.3) * np.sin(f.y * 1.1) * np.sin(f.z * 1.2) > 0.1).astype(np.float32)
            hu = hu * (1 - mast) + (H["air"] * cells + H["bone"] * (1 - cells)) * mast
            # orbits: fat cone with the globe
            orb = f.ellipsoid((side * 30, self.inner_r[1] - 10, 0.66 * zb), (16, 20, 14))
            hu = hu * (1 - orb) + H["fat"] * orb
            globe = f.ellipsoid((side * 30, self.inner_r[1] + 2, 0.66 * zb), (11, 11, 11))
            hu = hu * (1 - globe) + H["globe"] * globe
        clivus = f.ellipsoid((0, -2, 0.8 * zb), (9, 12, 14))
        hu = hu * (1 - clivus) + H["bone"] * 0.8 * clivus
        sphen = f.ellipsoid((0, 14, 0.84 * zb), (11, 9, 8))
        hu = hu * (1 - sphen) + H["air"] * sphen
        frontal = f.ellipsoid((0, self.inner_r[1] + self.skull_t * 0.5, -0.35 * self.brain_r[2]), (11, 4.0, 9))
        hu = hu * (1 - frontal) + H["air"] * frontal
        nasal = f.ellipsoid((0, self.inner_r[1] + 4, 1.05 * zb), (8, 16, 12))
        hu = hu * (1 - nasal) + H["air"] * nasal
        return hu

    def _ventricles(self, f):
        s = self.vent_scale
        v = np.zeros_like(f.x)
        for side in (-1, 1):
            parts = [((side * 7 * s ** 0.5, 0, 17), (4.5 * s, 26, 5.5 * s)),
                     ((side * 8 * s ** 0.5, 22, 11), (4 * s, 9, 7 * s ** 0.7)),
                     ((side * 17, -26, 9), (5.5 * s, 11, 7 * s ** 0.7)),
                     ((side * 22, -8, -14), (3.5 * s, 10, 4 * s))]  # temporal horn
            for c, r in parts:
                v = np.maximum(v, f.ellipsoid(c, r))
        v = np.maximum(v, f.ellipsoid((0, -4, 2), (1.2 + 1.5 * self.atrophy, 11, 9)))  # third
        v = np.maximum(v, f.ellipsoid((0, -42, -0.55 * self.brain_r[2]), (5, 4, 6)))  # fourth
        return v

    def _cisterns(self, f):
        zb = -self.brain_r[2]
        c = np.maximum(f.ellipsoid((0, 12, 0.38 * zb), (11 + 4 * self.atrophy, 8, 5)),
                       f.ellipsoid((0, -24, 0.12 * zb), (13, 5 + 2 * self.atrophy, 5)))
        # sylvian fissures: lateral CSF clefts
        for side in (-1, 1):
            c = np.maximum(c, f.ellipsoid((side * (self.brain_r[0] - 12), 8, 0.15 * zb), (12, 22, 1.2 + 1.5 * self.atrophy)))
        return c

    # --- bleed shapes: each returns (blood fraction, oedema fraction or None) ----------------------
    def _angle_from(self, f, direction):
        n = np.sqrt(f.x ** 2 + f.y ** 2 + f.z ** 2) + 1e-6
        cosang = (f.x * direction[0] + f.y * direction[1] + f.z * direction[2]) / n
        return np.arccos(np.clip(cosang, -1, 1))

    def _fracture(self, f, p, hu, skull):
        """A thin soft-tissue-density line through the skull over an epidural bleed."""
        n = p["fracture_normal"]
        dist = np.abs(f.x * n[0] + f.y * n[1] + f.z * n[2])
        line = f.soft(dist - 0.5) * (self._angle_from(f, p["dir"]) < p["half_angle"] * 1.4) * skull
        return hu * (1 - line) + 45.0 * line

    def _render_edh(self, f, p, ctx):
        ang = self._angle_from(f, p["dir"])
        prof = np.clip(1 - (ang / p["half_angle"]) ** 2, 0, None)
        depth = -ctx["sd_inner"]  # mm inside the inner table
        return f.soft(depth - p["thickness"] * prof) * (prof > 0) * ctx["intra"], None

    def _render_sdh(self, f, p, ctx):
        if p["falx"]:
            x = ctx["fs"].x
            sheet = f.soft(np.abs(x - p["side"] * (p["thickness"] / 2 + 0.7)) - p["thickness"] / 2)
            extent = f.soft(np.abs(f.y - p["y0"]) - p["half_len"]) * f.soft(p["z0"] - 25 - f.z)
            return sheet * extent * ctx["intra"], None
        ang = self._angle_from(f, p["dir"])
        prof = np.clip(1 - (ang / p["half_angle"]) ** 4, 0, None) ** 0.5
        depth = -ctx["sd_inner"]
        return f.soft(depth - p["thickness"] * prof) * (prof > 0) * ctx["intra"], None

    def _render_sah(self, f, p, ctx):
        d = np.sqrt((f.x - p["center"][0]) ** 2 + (f.y - p["center"][1]) ** 2 + (f.z - p["center"][2]) ** 2)
        region = f.soft(d - p["radius"])
        spaces = np.maximum(ctx["sulcus"], ctx["cist"] * (1.0 if p["basal"] else 0.0))
        # the convexity subarachnoid space itself (between brain and inner table) fills too
        surface = ctx["intra"] * (1 - ctx["brain"]) * f.soft(-ctx["sd_inner"] - 6.0)
        return region * np.maximum(spaces, surface), None

    def _render_iph(self, f, p, ctx):
        c, r = p["center"], p["radii"]
        dx, dy, dz = f.x - c[0], f.y - c[1], f.z - c[2]
        rot = p["rot"]
        lx = rot[0, 0] * dx + rot[1, 0] * dy + rot[2, 0] * dz
        ly = rot[0, 1] * dx + rot[1, 1] * dy + rot[2, 1] * dz
        lz = rot[0, 2] * dx + rot[1, 2] * dy + rot[2, 2] * dz
        rho = np.sqrt((lx / r[0]) ** 2 + (ly / r[1]) ** 2 + (lz / r[2]) ** 2) + 1e-6
        theta = np.arctan2(ly, lx)
        phi = np.arctan2(lz, np.sqrt(lx * lx + ly * ly))
        lobes = p["lobes"]
        wobble = 1 + lobes[0] * np.sin(2 * theta) + lobes[1] * np.cos(3 * theta) + lobes[2] * np.sin(2 * phi) \
            + lobes[3] * np.cos(theta + phi)
        dist = np.sqrt(dx * dx + dy * dy + dz * dz)
        sd = (rho / wobble - 1.0) * dist / rho
        blood = f.soft(sd) * ctx["brain"]
        edema = f.soft(sd - p["edema"]) * ctx["brain"]
        return blood, edema

    def _render_ivh(self, f, p, ctx):
        vent = ctx["vent"]
        # dependent layering: the patient lies supine, so blood settles posteriorly (low y)
        level = p["level"] * 25.0
        lay = f.soft(f.y - level)
        if not p["third"]:
            lay = lay * f.soft(np.abs(ctx["fs"].x) - 3.5)
        return vent * lay, None

    # --- scanner ----------------------------------------------------------------------------------
    def _scanner(self, hu):
        rng = self.rng
        px = self.pixel
        blur = 0.55 / px
        hu = ndimage.gaussian_filter(hu, sigma=(0, blur, blur), truncate=3.0)
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=(0, 0.7, 0.7), truncate=2.5)
        noise *= self.noise_sd / max(float(noise.std()), 1e-6)
        head = hu > -500
        hu = hu + noise * np.where(head, 1.0, 0.6)
        # beam hardening near the skull base: a dark streak band between the petrous bones
        zb = -self.brain_r[2] * 0.68
        k_n, n, _ = hu.shape
        z_world = self.grid()[2, 2] * np.arange(k_n) + self.grid()[2, 3] - self.offset[2]
        weight = np.exp(-((z_world - zb) / 10.0) ** 2).astype(np.float32)
        if weight.max() > 0.05:
            jj = np.arange(n, dtype=np.float32)[:, None]
            ii = np.arange(n, dtype=np.float32)[None, :]
            streak = (np.sin(0.09 * (ii * 0.8 + jj * 0.6)) * np.sin(0.05 * (ii - jj))).astype(np.float32)
            hu -= (12.0 * weight[:, None, None] * np.abs(streak)[None] * head).astype(np.float32)
        # reconstruction circle: outside it the scanner stores padding
        c = (n - 1) / 2.0
        rr = np.hypot(*np.meshgrid(np.arange(n) - c, np.arange(n) - c))
        hu[:, rr > n / 2.0] = PADDING_HU
        return np.round(hu).astype(np.float32)

    def _truth_lesions(self, volume, mask, lesions):
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


def _upsample(arr, fct):
    """Linear upsampling in-plane by an integer factor, pixel edges kept (grid mode)."""
    if fct == 1:
        return arr
    return ndimage.zoom(arr, (1, fct, fct), order=1, grid_mode=True, mode="nearest").astype(np.float32)


def generate(seed: int, bleeds: bool = True, **kwargs) -> Phantom:
    return PhantomGenerator(seed, **kwargs).generate(bleeds)


# --- exports -----------------------------------------------------------------------------------------
def write_phantom(ph: Phantom, out: Path, fmt: str = "nifti"):
    from .io import write_image

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


if __name__ == "__main__":
    sys.exit(main())
