"""Three-plane 3D localization cascade (paper 000, Nemcek, Jakubicek et al.).

1. The head is rotationally aligned (mid-sagittal plane) and resampled to the cascade grid: 5 mm
   axial slices (paper 000) and 2 mm in-plane, 128 × 128 × 40 voxels around the head centre; its
   axial, coronal (40 × 128) and sagittal (40 × 128) slices get bone/brain/subdural channels.
2. Per plane, stage 1 ("ich": bleed in this slice?) reads every slice that cuts the head; stage 2
   (one binary net per subtype) reads the slices with P(ICH) ≥ stage1_threshold. A slice's subtype
   probability is P(ICH)·P(subtype | ICH).
3. Fusion with neighbours: p'(n) = Σ_m w_m p(n+m) / Σ_m w_m over slices inside the stack (default
   kernel 0.25/0.5/0.25, chosen on validation data; see the model card).
4. Per subtype, runs of fused p ≥ threshold in each plane are intervals (one threshold, or one per
   plane and subtype: `fusion.thresholds`, tuned on validation scans because the 15 subtype
   classifiers are not equally calibrated — the paper gives no threshold; runs split by at most
   `fusion.gap` slices are one, so a dip inside a bleed does not make two boxes); their products (axial ×
   coronal × sagittal) are boxes. Several runs in several planes give ambiguous products: ours keeps
   those that hold blood-density voxels (45–100 HU in the brain, ≥ min_blood_ml), at most as many as
   the largest number of runs in one plane (a departure: the paper does not say how it resolves this).
5. Boxes map back through the alignment: an oriented box (ROI) on the original head, its probability
   the mean fused probability over its slices in the three planes.

A model whose catalogue input has `context_mm` (a departure, 2.5D) gives its axial nets each slice
together with the slices that far above and below (9 channels): an axial slice alone shows nothing of
a bleed's vertical shape, which the coronal and sagittal slices show in-plane.
"""
import numpy as np

from ..findings import SUBTYPES, BoxFinding, Results
from ..networks.classifier import ClassifierBank
from ..preprocessing import (Alignment, CASCADE_SPACING, aligned_grid, brain_mask, channels_torch, neighbour_offset,
                             resample, with_neighbours)
from .base import Method

PLANES = ("axial", "coronal", "sagittal")
NETS = ("ich",) + SUBTYPES


def plane_slices(volume: np.ndarray, plane: str) -> np.ndarray:
    """Cascade grid (k, j, i) → slices of one plane: axial (k; j, i), coronal (j; k, i), sagittal (i; k, j)."""
    if plane == "axial":
        return volume
    if plane == "coronal":
        return np.transpose(volume, (1, 0, 2))
    return np.transpose(volume, (2, 0, 1))


def context_offset(plane: str, context_mm) -> int:
    """How many slices away the neighbours a plane's nets read lie (0: one slice). Only the axial
    plane reads them: coronal and sagittal slices show the vertical axis in-plane."""
    if plane != "axial" or not context_mm:
        return 0
    return neighbour_offset(CASCADE_SPACING[2], float(context_mm))


def plane_bank(offset: int) -> ClassifierBank:
    """A plane's six classifiers: 3 input channels, or 9 when they read the neighbours too."""
    return ClassifierBank(NETS, in_channels=9 if offset else 3)


def plane_input(slices: np.ndarray, ks, offset: int) -> np.ndarray:
    """What a plane's nets read of slices ks: (n, H, W), or (n, 3, H, W) with the slices `offset` away."""
    if offset:
        return with_neighbours(slices, ks, offset)
    return slices[np.asarray(ks, int)]


def fuse(p: np.ndarray, kernel) -> np.ndarray:
    """Weighted fusion with neighbouring slices, renormalized at the ends of the stack."""
    w = np.asarray(kernel, float)
    num = np.convolve(p, w, mode="same")
    den = np.convolve(np.ones_like(p), w, mode="same")
    return num / np.maximum(den, 1e-9)


def fuse_columns(p: np.ndarray, kernel) -> np.ndarray:
    """fuse() applied to every column of an (n, classes) probability table."""
    return np.stack([fuse(p[:, c], kernel) for c in range(p.shape[1])], axis=1)


def runs(mask: np.ndarray, gap: int = 0):
    """Inclusive (start, end) of each run of True; runs split by at most `gap` False slices are one."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(int))
    out = []
    for start, end in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1):
        if out and start - out[-1][1] - 1 <= gap:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class ThreePlaneCascade(Method):
    name = "cascade"

    def build(self, state):
        self.offsets = {plane: context_offset(plane, self.entry.input.get("context_mm")) for plane in PLANES}
        self.banks = {}
        for plane in PLANES:
            bank = plane_bank(self.offsets[plane])
            bank.load_state_dict(state[plane])
            self.banks[plane] = bank

    def network_input(self, slices, ks, plane):
        """What the plane's nets read of slices ks (plane_input with this model's context)."""
        return plane_input(slices, ks, self.offsets[plane])

    def networks(self):
        return list(self.banks.values())

    def plane_probabilities(self, slices, plane, kernel=None, stage1_threshold=None):
        """(n, 6) fused probabilities of one plane's slices: column 0 P(ICH), then P(ICH)·P(subtype|ICH)
        on the slices with P(ICH) ≥ stage1_threshold (default: the catalogue's), 0 elsewhere."""
        import torch

        p = self.params
        bank = self.banks[plane]
        n = len(slices)
        raw = np.zeros((n, 1 + len(SUBTYPES)), np.float32)
        inside = np.nonzero((slices > -300).mean(axis=(1, 2)) > 0.02)[0]
        if len(inside):
            raw[inside, 0] = self.batched(lambda x: torch.sigmoid(bank.nets["ich"](channels_torch(x, "paper000"))),
                                          self.network_input(slices, inside, plane), batch=64)
            if stage1_threshold is None:
                stage1_threshold = p.get("stage1_threshold", 0.5)
            stage2 = inside[raw[inside, 0] >= float(stage1_threshold)]
            if len(stage2):
                def subtypes(x):
                    c = channels_torch(x, "paper000")
                    return torch.stack([torch.sigmoid(bank.nets[s](c)) for s in SUBTYPES], dim=1)

                gated = self.network_input(slices, stage2, plane)
                raw[stage2, 1:] = raw[stage2, :1] * self.batched(subtypes, gated, batch=64)
        kernel = kernel if kernel is not None else p.get("fusion", {}).get("kernel", [0.25, 0.5, 0.25])
        return fuse_columns(raw, kernel)

    def plane_thresholds(self, threshold=None):
        """{plane: [IPH, IVH, SAH, SDH, EDH] thresholds} from a number, such a dict, or (None) the
        catalogue's fusion parameters: per-classifier `thresholds` where tuned, else `threshold`."""
        if threshold is None:
            fusion = self.params.get("fusion", {})
            threshold = fusion.get("thresholds", fusion.get("threshold", 0.5))
        if isinstance(threshold, dict):
            return {plane: [float(v) for v in threshold[plane]] for plane in PLANES}
        return {plane: [float(threshold)] * len(SUBTYPES) for plane in PLANES}

    def grid_boxes(self, probs, grid, threshold=None, gap=None):
        """[(subtype, (k0, k1), (j0, j1), (i0, i1), probability)] on the cascade grid from the three
        planes' fused probabilities (interval products, ambiguous ones resolved by blood density).
        gap (default: the catalogue's fusion.gap, else 0) bridges short dips inside a run."""
        thr = self.plane_thresholds(threshold)
        gap = int(gap if gap is not None else self.params.get("fusion", {}).get("gap", 0))
        brain, out = None, []
        for s, code in enumerate(SUBTYPES, start=1):
            ivals = {plane: runs(probs[plane][:, s] >= thr[plane][s - 1], gap) for plane in PLANES}
            if not all(ivals.values()):
                continue
            cands = [(a, c, g) for a in ivals["axial"] for c in ivals["coronal"] for g in ivals["sagittal"]]
            if len(cands) > 1:
                brain = brain_mask(grid) if brain is None else brain
                cands = self._resolve(cands, grid, brain, max(len(v) for v in ivals.values()))
            for (k0, k1), (j0, j1), (i0, i1) in cands:
                prob = np.mean([probs["axial"][k0:k1 + 1, s].mean(), probs["coronal"][j0:j1 + 1, s].mean(),
                                probs["sagittal"][i0:i1 + 1, s].mean()])
                out.append((code, (k0, k1), (j0, j1), (i0, i1), float(prob)))
        return out

    def run(self, scan, progress=None):
        vol = scan.volume
        res = Results(input=vol.name, volume=vol)
        if scan.is_2d:
            return self._run_2d(scan, res)
        grid, m = scan.cascade_grid()
        align = scan.alignment
        probs = {}
        for n, plane in enumerate(PLANES):
            probs[plane] = self.plane_probabilities(plane_slices(grid, plane), plane)
            if progress:
                progress((n + 1) / 3.0, f"cascade {plane}")
        res.slice_scores["cascade"] = self._input_slice_scores(vol, align, m, probs["axial"][:, 0])
        res.boxes.extend(self.boxes(probs, grid, m, align))
        return res

    def boxes(self, probs, grid, m, align: Alignment, threshold=None, gap=None):
        """grid_boxes() mapped back through the alignment: BoxFindings on the original head."""
        return [self._box(m, align, (k0, j0, i0), (k1, j1, i1), code, prob)
                for code, (k0, k1), (j0, j1), (i0, i1), prob in self.grid_boxes(probs, grid, threshold, gap)]

    def _resolve(self, cands, grid, brain, keep_max):
        min_ml = float(self.params.get("min_blood_ml", 0.2))
        voxel_ml = float(np.prod(CASCADE_SPACING)) / 1000.0
        blood = (grid >= 45) & (grid <= 100) & brain
        scored = []
        for c in cands:
            (k0, k1), (j0, j1), (i0, i1) = c
            scored.append((blood[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1].sum() * voxel_ml, c))
        scored.sort(key=lambda t: -t[0])
        kept = [c for ml, c in scored if ml >= min_ml][:keep_max]
        return kept or [scored[0][1]]

    @staticmethod
    def _box(m, align: Alignment, kji0, kji1, code, prob):
        lo = np.array(kji0[::-1], float) - 0.5
        hi = np.array(kji1[::-1], float) + 0.5
        centre_grid = (lo + hi) / 2.0
        centre_aligned = centre_grid @ m[:3, :3].T + m[:3, 3]
        size = (hi - lo) * np.array(CASCADE_SPACING)
        centre = align.to_original(centre_aligned)[0]
        # grid axes are ±R, ±A, S of the aligned head; in the original frame they are R^T's columns
        orientation = align.rotation.T @ (m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0))
        return BoxFinding("cascade", code, float(prob), centre, size, orientation)

    @staticmethod
    def _input_slice_scores(vol, align, m, p_axial):
        """P(ICH) of each input axial slice, read off the fused axial profile at its aligned height."""
        k_n, j_n, i_n = vol.shape
        centres = vol.ijk_to_ras_points(np.column_stack([np.full(k_n, (i_n - 1) / 2.0), np.full(k_n, (j_n - 1) / 2.0),
                                                         np.arange(k_n)]))
        aligned = align.to_aligned(centres)
        k_grid = (aligned[:, 2] - m[2, 3]) / m[2, 2]
        return [float(v) for v in np.interp(k_grid, np.arange(len(p_axial)), p_axial)]

    def _run_2d(self, scan, res):
        """A single slice: stage 1 of the axial plane only (no 3D box without three planes)."""
        import torch

        vol = scan.volume
        jj, ii = np.nonzero(scan.head[0]) if scan.head[0].any() else (np.array([vol.shape[1] / 2]), np.array([vol.shape[2] / 2]))
        centre = vol.ijk_to_ras_points([[ii.mean(), jj.mean(), 0]])[0]
        align = Alignment(np.eye(3), centre)
        m, shape = aligned_grid(align, CASCADE_SPACING, (128, 128, 1))
        sl = resample(vol, m, shape, default=-1000.0)
        p1 = self.batched(lambda x: torch.sigmoid(self.banks["axial"].nets["ich"](channels_torch(x, "paper000"))),
                          self.network_input(sl, [0], "axial"))  # a 2.5D net: the slice stands in for its neighbours
        res.slice_scores["cascade"] = [float(p1[0])]
        res.warnings.append("cascade: a single slice gives no 3D boxes (three planes are needed); slice score only")
        return res
