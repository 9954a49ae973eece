"""The phantom's bleeds, one shape per subtype (IPH, IVH, SAH, SDH, EDH): drawn from the random
stream with the head they lie in, rendered as a blood fraction per point, with the edema around an
IPH and the skull fracture over most EDHs."""
from dataclasses import dataclass
from typing import Dict

import numpy as np

from ..findings import SUBTYPES
from .shapes import random_rotation

BLOOD_HU = {"acute": (50.0, 76.0), "subacute": (32.0, 45.0), "chronic": (8.0, 22.0)}


@dataclass
class Lesion:
    id: int
    subtype: str
    params: Dict[str, object]
    acuity: str = "acute"
    blood_hu: float = 70.0


def draw_lesions(rng, anatomy, seed, subtypes, acuity):
    """The bleeds of one phantom: `subtypes` as given, or none (one head in five) to three drawn."""
    if subtypes is None:
        if rng.random() < 0.2:
            chosen = []
        else:
            n = rng.choice([1, 1, 2, 2, 3])
            chosen = list(rng.choice(SUBTYPES, size=n, replace=False, p=[0.3, 0.15, 0.2, 0.25, 0.1]))
    else:
        chosen = list(subtypes)
    drawer = _ShapeDrawer(rng, anatomy, seed)
    lesions = []
    for n, st in enumerate(chosen, start=1):
        lo, hi = BLOOD_HU[acuity]
        lesions.append(Lesion(n, st, getattr(drawer, st.lower())(), acuity, float(rng.uniform(lo, hi))))
    return lesions


class _ShapeDrawer:
    """Draws one bleed's shape parameters per subtype, in the head's frame."""

    def __init__(self, rng, anatomy, seed):
        self.rng, self.anatomy, self.seed = rng, anatomy, seed

    def convexity_direction(self, elev=(-15, 55)):
        az = self.rng.uniform(0, 2 * np.pi)
        el = np.radians(self.rng.uniform(*elev))
        return np.array([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)])

    def edh(self):
        p = {"dir": self.convexity_direction((-5, 45)), "half_angle": np.radians(self.rng.uniform(18, 30)),
             "thickness": self.rng.uniform(9, 20)}
        # a skull fracture over most epidural bleeds, drawn from its own stream so that adding it did
        # not change any other random draw of existing seeds
        frac_rng = np.random.default_rng([self.seed, 17])
        if frac_rng.random() < 0.75:
            normal = np.cross(p["dir"], frac_rng.normal(size=3))
            p["fracture_normal"] = normal / np.linalg.norm(normal)
        return p

    def sdh(self):
        if self.rng.random() < 0.2:
            return {"falx": True, "side": float(self.rng.choice([-1, 1])), "y0": self.rng.uniform(-30, 30),
                    "half_len": self.rng.uniform(20, 35), "z0": self.rng.uniform(10, 30), "thickness": self.rng.uniform(3, 6)}
        return {"falx": False, "dir": self.convexity_direction((-5, 50)),
                "half_angle": np.radians(self.rng.uniform(35, 60)), "thickness": self.rng.uniform(5, 14)}

    def sah(self):
        basal = self.rng.random() < 0.35
        if basal:
            center = np.array([self.rng.uniform(-10, 10), self.rng.uniform(0, 15), -0.38 * self.anatomy.brain_r[2]])
            radius = self.rng.uniform(22, 32)
        else:
            d = self.convexity_direction((0, 50))
            center = d * (self.anatomy.brain_r - 8)
            radius = self.rng.uniform(22, 35)
        return {"center": center, "radius": radius, "basal": basal}

    def iph(self):
        rng = self.rng
        site = rng.choice(["basal_ganglia", "thalamus", "lobar", "cerebellum"], p=[0.4, 0.15, 0.35, 0.1])
        side = rng.choice([-1, 1])
        if site == "basal_ganglia":
            c = np.array([side * rng.uniform(18, 26), rng.uniform(-2, 10), rng.uniform(-2, 12)])
        elif site == "thalamus":
            c = np.array([side * rng.uniform(8, 14), rng.uniform(-16, -8), rng.uniform(2, 12)])
        elif site == "cerebellum":
            c = np.array([side * rng.uniform(12, 24), rng.uniform(-50, -38), -0.6 * self.anatomy.brain_r[2]])
        else:
            d = self.convexity_direction((0, 50))
            c = d * (self.anatomy.brain_r - rng.uniform(18, 26))
        big = 14 if site != "cerebellum" else 10
        r = rng.uniform(6, big, 3) * np.array([1, 1.2, 0.9])
        return {"center": c, "radii": r, "rot": random_rotation(rng, 40), "site": str(site),
                "lobes": rng.normal(0, 0.12, 4), "edema": rng.uniform(2, 5)}

    def ivh(self):
        return {"level": self.rng.uniform(-0.55, 0.1), "third": bool(self.rng.random() < 0.4)}


def midline_shift(lesions):
    shift = 0.0
    for les in lesions:
        p = les.params
        if les.subtype in ("EDH", "SDH") and not p.get("falx"):
            mm = max(0.0, p["thickness"] - 8) * 0.6
            shift -= np.sign(p["dir"][0]) * mm
        elif les.subtype == "IPH":
            mm = max(0.0, float(np.prod(p["radii"])) ** (1 / 3) - 10) * 0.5
            shift -= np.sign(p["center"][0]) * mm
    return float(np.clip(shift, -12, 12))


def render_bleeds(f, hu, lesions, skull, ctx):
    """Fractures first, then each bleed's blood fraction over the tissue (and its edema around)."""
    fracs = np.zeros((len(lesions),) + f.x.shape, np.float32)
    for les in lesions:
        if "fracture_normal" in les.params:
            hu = _fracture(f, les.params, hu, skull)
    for idx, les in enumerate(lesions):
        lf, edema = RENDER[les.subtype](f, les.params, ctx)
        if edema is not None:
            hu = hu - 10.0 * edema * (1 - lf)
        lf = np.clip(lf, 0, 1).astype(np.float32)
        hu = hu * (1 - lf) + les.blood_hu * lf
        fracs[idx] = lf
    return hu, fracs


# --- rendering: each subtype returns (blood fraction, oedema fraction or None) ---------------------
def _fracture(f, p, hu, skull):
    """A thin soft-tissue-density line through the skull over an epidural bleed."""
    n = p["fracture_normal"]
    dist = np.abs(f.x * n[0] + f.y * n[1] + f.z * n[2])
    line = f.soft(dist - 0.5) * (f.angle_from(p["dir"]) < p["half_angle"] * 1.4) * skull
    return hu * (1 - line) + 45.0 * line


def _edh(f, p, ctx):
    ang = f.angle_from(p["dir"])
    prof = np.clip(1 - (ang / p["half_angle"]) ** 2, 0, None)
    depth = -ctx["sd_inner"]  # mm inside the inner table
    return f.soft(depth - p["thickness"] * prof) * (prof > 0) * ctx["intra"], None


def _sdh(f, p, ctx):
    if p["falx"]:
        x = ctx["fs"].x
        sheet = f.soft(np.abs(x - p["side"] * (p["thickness"] / 2 + 0.7)) - p["thickness"] / 2)
        extent = f.soft(np.abs(f.y - p["y0"]) - p["half_len"]) * f.soft(p["z0"] - 25 - f.z)
        return sheet * extent * ctx["intra"], None
    ang = f.angle_from(p["dir"])
    prof = np.clip(1 - (ang / p["half_angle"]) ** 4, 0, None) ** 0.5
    depth = -ctx["sd_inner"]
    return f.soft(depth - p["thickness"] * prof) * (prof > 0) * ctx["intra"], None


def _sah(f, p, ctx):
    d = np.sqrt((f.x - p["center"][0]) ** 2 + (f.y - p["center"][1]) ** 2 + (f.z - p["center"][2]) ** 2)
    region = f.soft(d - p["radius"])
    spaces = np.maximum(ctx["sulcus"], ctx["cist"] * (1.0 if p["basal"] else 0.0))
    # the convexity subarachnoid space itself (between brain and inner table) fills too
    surface = ctx["intra"] * (1 - ctx["brain"]) * f.soft(-ctx["sd_inner"] - 6.0)
    return region * np.maximum(spaces, surface), None


def _iph(f, p, ctx):
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


def _ivh(f, p, ctx):
    vent = ctx["vent"]
    # dependent layering: the patient lies supine, so blood settles posteriorly (low y)
    level = p["level"] * 25.0
    lay = f.soft(f.y - level)
    if not p["third"]:
        lay = lay * f.soft(np.abs(ctx["fs"].x) - 3.5)
    return vent * lay, None


RENDER = {"EDH": _edh, "SDH": _sdh, "SAH": _sah, "IPH": _iph, "IVH": _ivh}
