"""U-Net segmenter (papers 002 and 003): slice gate → 2D U-Net → post-processing → 3D lesions.

1. A light slice classifier (paper 002) reads every axial slice of the head crop at 128×128; the
   segmentation of slices with P(ICH) ≥ gate_threshold is kept (tuned on validation scans; 0 keeps
   every slice). The method's slice score is the segmentation's own evidence (maximum of the
   5×5-smoothed foreground probability), which ranks bleed slices better than the gate; a slice
   whose evidence reaches gate_override is kept even when the gate rejects it (a departure: the
   gate then removes doubtful specks without dropping slices of a bleed the U-Net is sure of).
2. The U-Net (six classes: background + five subtypes) reads the 256 head crop with MONAI's
   sliding-window inference, 128×128 windows averaged where they overlap (paper 003's crops);
   "full" reads the whole crop at once. With `mirror` (a departure: test-time augmentation as in
   nnU-Net, not in the papers) the left-right mirrored slice is read too and the two softmax maps
   averaged — on validation phantoms +0.01 Dice over bleed slices for twice the network time.
   A model whose catalogue input has `context_mm` (a departure, 2.5D) reads each slice together with
   the slices that far above and below (nearest slices; the slice itself past the ends and for a
   single 2D image), three windows each: nine channels.
3. Paper 003's post-processing on the input grid, in mm so it holds for any pixel size: foreground
   probability ≥ threshold, closing (paper: 10×10 px at ~0.45 mm ≈ 4 mm) then opening (5×5 px ≈ 2 mm),
   3D connected components, components below min_volume_ml dropped. Before the components, voxels
   brighter than bone_hu leave the mask (a departure): blood is below ~100 HU, so a voxel brighter
   than halfway between blood and cortical bone holds more bone than blood, whatever the network
   says — a bleed against the skull otherwise spills a pixel or two into the inner table.
4. One segment finding per lesion: a component's subtype is the majority of its voxels' most likely
   subtype; IPH, SDH and EDH components are lesions of their own, while all IVH components form one
   lesion and all SAH components another (blood spreading through the ventricles or the
   subarachnoid space is reported as one volume, not as its pieces). Each lesion: centroid, box,
   volume (voxels × voxel volume) and the ABC/2 estimate.
"""
from typing import Dict, NamedTuple, Optional

import numpy as np
from scipy import ndimage

from ..findings import SUBTYPES, Results, SegmentFinding
from ..networks import SliceClassifier, build_unet
from ..preprocessing import AXIAL_CROP_SIZE, channels_torch, slices_in_context
from .base import Method


SPREADING = ("IVH", "SAH")  # subtypes reported as one lesion per scan, whatever their pieces


class UNetMaps(NamedTuple):
    """The networks' output for one scan, on the head crop: P(ICH) per slice (128 crop), foreground
    probability and most likely subtype index (1..5) per pixel (256 crop)."""
    gate: np.ndarray
    fg: np.ndarray
    sub: np.ndarray


class UNetSegmenter(Method):
    name = "unet"

    def build(self, state):
        self.context_mm = float(self.entry.input.get("context_mm") or 0.0)
        self.unet = build_unet(context=bool(self.context_mm))
        self.unet.load_state_dict(state["unet"])
        self.gate = SliceClassifier()
        self.gate.load_state_dict(state["gate"])

    def networks(self):
        return [self.unet, self.gate]

    def run(self, scan, progress=None):
        return self.segment(scan, self.probabilities(scan, progress))

    def probabilities(self, scan, progress=None) -> "UNetMaps":
        """The networks' part: gate per slice and the U-Net's maps on the 256 head crop."""
        gate = self.gate_probabilities(scan.crop_hu(AXIAL_CROP_SIZE // 2))
        hu = scan.crop_hu(AXIAL_CROP_SIZE)
        fg = np.zeros(hu.shape, np.float32)
        sub = np.zeros(hu.shape, np.uint8)
        for s in range(0, len(hu), 32):  # in chunks: six class maps of a 300-slice scan would take ~0.5 GB
            ks = np.arange(s, min(s + 32, len(hu)))
            probs = self.class_probabilities(slices_in_context(hu, ks, scan.volume.spacing[2], self.context_mm))
            fg[s:s + 32] = 1.0 - probs[:, 0]
            sub[s:s + 32] = np.argmax(probs[:, 1:], axis=1) + 1
            if progress:
                progress(min(1.0, (s + 32) / len(hu)), "U-Net")
        return UNetMaps(gate, fg, sub)

    def segment(self, scan, maps: "UNetMaps", params: Optional[Dict] = None) -> Results:
        """Post-processing (params override the catalogue's, for tuning): gate, threshold,
        morphology and 3D components on the input grid → segment findings."""
        vol = scan.volume
        p = {**self.params, **(params or {})}
        res = Results(input=vol.name, volume=vol)
        # slice score: the segmentation's own evidence (a few pixels agreeing), not the gate — with the
        # first bundled model, its AUC on validation phantoms was 0.98 against 0.87 for the gate; a gate
        # trained on real slice labels (ich-train unet --gate-only) weighs it ("gate_x_evidence")
        evidence = ndimage.uniform_filter(maps.fg, (1, 5, 5)).max(axis=(1, 2))
        score = evidence * maps.gate if p.get("slice_score") == "gate_x_evidence" else evidence
        res.slice_scores["unet"] = [float(v) for v in score]
        res.lesion_labels = np.zeros(vol.shape, np.uint16)
        keep = maps.gate >= float(p.get("gate_threshold", 0.5))  # paper 002: the gate picks the slices
        if p.get("gate_override") is not None:  # ours: a slice the U-Net is sure of is kept whatever the gate says
            keep |= evidence >= float(p["gate_override"])
        gated = np.nonzero(keep)[0]
        if not len(gated):
            return res
        fg_native = np.zeros(vol.shape, np.float32)
        sub_native = np.zeros(vol.shape, np.uint8)
        fg_native[gated] = scan.crop.paste(maps.fg[gated], (len(gated),) + vol.shape[1:])
        sub_native[gated] = np.rint(scan.crop.paste(maps.sub[gated], (len(gated),) + vol.shape[1:], mode="nearest"))
        mask = self._postprocess(fg_native >= float(p.get("threshold", 0.5)), vol.spacing, p)
        if p.get("bone_hu") is not None:
            mask &= vol.hu <= float(p["bone_hu"])
        self._components(res, vol, mask, fg_native, sub_native, float(p.get("min_volume_ml", 0.05)))
        return res

    def gate_probabilities(self, hu128):
        """P(ICH) per slice of the 128 head crop (HU)."""
        import torch

        return self.batched(lambda x: torch.sigmoid(self.gate(channels_torch(x, "unet"))), hu128, batch=64)

    def class_probabilities(self, hu256, progress=None):
        """(n, 6, 256, 256) softmax of the 256 head crop (HU): background and the five subtypes.
        hu256 is (n, 256, 256), or (n, 3, 256, 256) for a 2.5D model (each slice with its neighbours)."""
        return self.batched(self._segment, hu256, batch=8, progress=progress, label="U-Net")

    def _segment(self, x):
        import torch

        x = channels_torch(x, "unet")
        probs = self._softmax(x)
        if self.params.get("mirror", False):
            probs = 0.5 * (probs + torch.flip(self._softmax(torch.flip(x, dims=[-1])), dims=[-1]))
        return probs

    def _softmax(self, x):
        import torch

        from monai.inferers import sliding_window_inference

        if self.params.get("inference", "sliding") == "full":
            logits = self.unet(x)
        else:
            logits = sliding_window_inference(x, roi_size=(128, 128), sw_batch_size=16, predictor=self.unet,
                                              overlap=0.25, mode="gaussian")
        return torch.softmax(logits, dim=1)

    @staticmethod
    def _postprocess(mask, spacing, p):
        px = float(np.mean(spacing[:2]))
        close = max(1, int(round(float(p.get("closing_mm", 4.0)) / px)))
        opening = max(1, int(round(float(p.get("opening_mm", 2.0)) / px)))
        out = np.zeros_like(mask)
        for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
            s = ndimage.binary_closing(mask[k], structure=np.ones((close, close), bool)) if close > 1 else mask[k]
            out[k] = ndimage.binary_opening(s, structure=np.ones((opening, opening), bool)) if opening > 1 else s
        return out

    @staticmethod
    def _components(res, vol, mask, fg, sub, min_ml):
        lab, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 2))
        lesions = {}  # one per component, or one per spreading subtype: subtype and the parts' kji
        for idx, sl in enumerate(ndimage.find_objects(lab), start=1):
            comp = lab[sl] == idx
            if comp.sum() * vol.voxel_ml < min_ml:
                continue
            votes = np.bincount(sub[sl][comp], minlength=len(SUBTYPES) + 1)[1:]
            subtype = SUBTYPES[int(np.argmax(votes))]
            key = subtype if subtype in SPREADING else idx
            lesions.setdefault(key, (subtype, []))[1].append(np.argwhere(comp) + np.array([s.start for s in sl]))
        for label_out, (subtype, parts) in enumerate(lesions.values(), start=1):
            kji = np.concatenate(parts)
            lo_kji, hi_kji = kji.min(axis=0), kji.max(axis=0)
            lesion = np.zeros(hi_kji - lo_kji + 1, bool)
            lesion[tuple((kji - lo_kji).T)] = True
            lo, hi = vol.voxel_box_ras(lo_kji, hi_kji)
            centroid = vol.kji_to_ras_points(kji.mean(axis=0))[0]
            res.lesion_labels[tuple(kji.T)] = label_out
            res.segments.append(SegmentFinding(
                "unet", subtype, float(fg[tuple(kji.T)].mean()), centroid, lo, hi, len(kji) * vol.voxel_ml,
                abc2_ml(lesion, vol.spacing), label_out))


def abc2_ml(comp: np.ndarray, spacing) -> float:
    """ABC/2 (Kothari): A = largest axial diameter, B = largest diameter perpendicular to A on that
    slice, C = number of slices with the lesion × slice thickness; A·B·C/2 in mL (cm³)."""
    from scipy.spatial import ConvexHull

    areas = comp.sum(axis=(1, 2))
    k = int(np.argmax(areas))
    jj, ii = np.nonzero(comp[k])
    pts = np.column_stack([ii * spacing[0], jj * spacing[1]]).astype(float)
    if len(pts) >= 3:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # noqa: BLE001 - collinear pixels: keep them all
            pass
    if len(pts) < 2:
        a_mm, b_mm = spacing[0], spacing[1]
    else:
        d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
        i, j = np.unravel_index(np.argmax(d), d.shape)
        u = (pts[j] - pts[i]) / max(d[i, j], 1e-9)
        a_mm = d[i, j] + spacing[0]  # pixel centres → edges
        proj = pts @ np.array([-u[1], u[0]])
        b_mm = np.ptp(proj) + spacing[1]
    c_mm = int((areas > 0).sum()) * spacing[2]
    return a_mm * b_mm * c_mm / 2.0 / 1000.0
