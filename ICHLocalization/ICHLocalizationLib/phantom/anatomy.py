"""The phantom's head: tissue values, skull, brain with its sulci, ventricles, cisterns, falx and
tentorium, the skull base, and the calcifications that look like blood. Drawn analytically in the
head frame (x → R, y → A, z → S, mm, origin at the brain centre)."""
import numpy as np

from .shapes import Field, unit_vector

# tissue HU (mean); each phantom draws its own values around them. "holder" (a head holder, not drawn
# yet) must stay: its random draw keeps every existing seed's phantom unchanged.
HU = {"air": -1000.0, "fat": -90.0, "scalp": 35.0, "bone": 1400.0, "diploe": 550.0, "csf": 6.0,
      "grey": 39.0, "white": 31.0, "deep_grey": 37.0, "falx": 55.0, "muscle": 45.0, "globe": 12.0,
      "calcification": 220.0, "holder": 80.0}


class Anatomy:
    """One head drawn from `rng`: its size, age-like atrophy, tissue values and folding."""

    def __init__(self, rng):
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
        self.waves = [(unit_vector(rng) * 2 * np.pi / rng.uniform(22, 30), rng.uniform(0, 2 * np.pi)) for _ in range(3)]
        self.sulcus_w = 0.5 + 1.5 * self.atrophy
        self.vent_scale = 1.0 + 0.9 * self.atrophy
        self.has_pineal_calc = rng.random() < 0.7
        self.has_plexus_calc = rng.random() < 0.5

    def render(self, f: Field, shift: float):
        """(HU, skull occupancy, context) of one sub-slice: cranium, brain, midline and posterior-fossa
        structures; the context holds what bleeds are placed by (None where the head is not).
        shift: how far (mm, along x: to the right when positive) the supratentorial midline is pushed."""
        hu = np.full(f.x.shape, self.hu["air"], np.float32)
        sd_head, _ = f.ellipsoid_sd((0, -4, -6), self.head_r * np.array([1, 1, 1.15]))
        head = f.soft(sd_head)
        if not head.any():
            return hu, None, None
        hu, skull, zbase, inner = self._cranium(f, hu, head)
        hu, ctx = self._brain(f, hu, zbase, inner, shift)
        return self._midline(f, hu, ctx), skull, ctx

    def skull_base_z(self):
        """Head-frame height (mm) of the petrous bones, where beam hardening streaks."""
        return -self.brain_r[2] * 0.68

    def _gyral(self, f):
        g = np.zeros_like(f.x)
        for kvec, phase in self.waves:
            g += np.sin(kvec[0] * f.x + kvec[1] * f.y + kvec[2] * f.z + phase)
        kmag = np.linalg.norm(self.waves[0][0])
        return np.abs(g) / (kmag * 1.2)  # ≈ distance (mm) to the sulcal fundus surface

    def _cranium(self, f, hu, head):
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

    def _brain(self, f, hu, zbase, inner, shift):
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
        xs = f.x - shift * f.soft(f.z + 0.3 * self.brain_r[2])  # midline structures shifted supratentorially
        ctx = {"intra": intra, "brain": brain, "sd_inner": sd_inner, "rho_inner": rho_inner, "sulcus": sulcus,
               "fs": Field(xs, f.y, f.z, f.edge), "depth": depth}
        return hu, ctx

    def _midline(self, f, hu, ctx):
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
