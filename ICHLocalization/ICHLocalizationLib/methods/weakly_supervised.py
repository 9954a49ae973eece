"""Weakly supervised MIL detector (paper 001): slice classifier → likelihood map → local maxima.

Every axial slice of the head crop is read at 128×128 (three channels from the "mil-code" window
configuration) in batches; the likelihood map (sigmoid of the max-pool logit map, or the attention
weights) is resized to the 256 crop grid where the detector runs with (h, T, d) and its smoothing
sigma from the catalogue (d and sigma in pixels of that grid, ~0.8 mm); points outside the head
mask are dropped; the map is pasted back onto the input grid as the likelihood volume.

With `mirror` (a departure: test-time augmentation, not in paper 001) each slice is also read
flipped, and the slice probabilities and the maps (flipped back) are averaged: "lr" (or true) adds
the left-right mirror, "lr+ap" also the anterior-posterior flip and both (four reads). A flipped
read alone scores like the plain one, so the gain comes from averaging reads whose false peaks
differ while a bleed's peak is common to all. Tuned on one half of validation phantoms 121–150 and
scored on the other, detector Dice was 0.57 with one read, 0.81 with "lr" and 0.84 with "lr+ap"
(two-fold means).

With `read_sizes` (also ours) each slice is read at several sizes of the head crop, the training
size (128) and larger ones, each with the flips above, and everything is averaged: 160 enlarges
small bleeds for the network's 4-pixel map grid. Two-fold on the same phantoms, each fold's search
starting from the four reads' tuned setting: four reads at 128 0.87, eight at 128 and 160 0.88
(with 176 instead: 0.88, 144: 0.87) — a small gain, about the spread between settings.

A model whose catalogue input has `context_mm` (a departure, 2.5D, as the U-Net's) reads each slice
with the slices that far above and below as nine channels; one with `size` 256 reads the head crop
unhalved. Both were tried against what looks like blood on a single 128 slice (the deep veins, the
falx) and are not in the bundled models (docs/accuracy.md).
"""
import numpy as np

from ..detector import detect_peaks
from ..findings import PointFinding, Results
from ..models import ModelError
from ..networks import MILNet
from ..preprocessing import AXIAL_CROP_SIZE, channels_torch, slices_in_context
from .base import Method

# axes flipped per extra read of a (N, C, rows, columns) batch: columns run left-right, rows
# anterior-posterior in an axial slice
MIRROR_FLIPS = {False: [], True: [[-1]], "lr": [[-1]], "lr+ap": [[-1], [-2], [-2, -1]]}


class WeaklySupervisedDetector(Method):
    name = "mil"

    def build(self, state):
        self.variant = self.entry.input.get("variant", "maxpool")
        self.context_mm = float(self.entry.input.get("context_mm") or 0.0)
        self.net = MILNet(self.variant, context=bool(self.context_mm))
        self.net.load_state_dict(state)
        if self.params.get("mirror", False) not in MIRROR_FLIPS:
            raise ModelError(f"model {self.entry.id}: params.mirror is {self.params['mirror']!r}; "
                             f"use false, true, \"lr\" or \"lr+ap\"")
        sizes = self.read_sizes()
        if not (isinstance(sizes, list) and sizes and all(isinstance(v, int) and 32 <= v <= 512 for v in sizes)):
            raise ModelError(f"model {self.entry.id}: params.read_sizes is {sizes!r}; "
                             f"use a list of head-crop sizes in pixels (32-512), e.g. [128, 160]")

    def networks(self):
        return [self.net]

    def read_sizes(self):
        """Head-crop sizes (pixels) each slice is read at: params.read_sizes, else the training size."""
        return self.params.get("read_sizes", [int(self.entry.input.get("size", 128))])

    def likelihood_maps(self, hu, slice_mm=5.0, progress=None):
        """Slice probabilities (n,) and likelihood maps (n, 256, 256) from the 256 head crop (HU) of
        slices slice_mm apart, read at each of read_sizes() with the mirror flips, all averaged; the
        detector and its tuning read these maps."""
        import torch
        import torch.nn.functional as F

        flips = [[]] + MIRROR_FLIPS[self.params.get("mirror", False)]
        sizes = self.read_sizes()

        def infer(x256):  # (N, 1 or 3 slices, 256, 256)
            prob, lmap = 0.0, 0.0
            for size in sizes:
                x = x256 if size == AXIAL_CROP_SIZE else F.interpolate(x256, size=(size, size),
                                                                      mode="area" if size < AXIAL_CROP_SIZE else "bilinear")
                x = channels_torch(x, "mil-code")
                maps = 0.0
                for dims in flips:
                    p, m = self.net.likelihood(torch.flip(x, dims=dims) if dims else x, resize=False)
                    prob, maps = prob + p, maps + (torch.flip(m, dims=dims) if dims else m)
                # resized once per size (flips commute with the bilinear resize): to the read size, as
                # MILNet.likelihood does, then to the 256 crop grid
                for side in (size, AXIAL_CROP_SIZE):
                    maps = F.interpolate(maps[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0]
                lmap = lmap + maps
            n = len(sizes) * len(flips)
            return prob / n, lmap / n

        stacks = slices_in_context(hu, range(len(hu)), slice_mm, self.context_mm) if self.context_mm else hu[:, None]
        return self.batched(infer, stacks, batch=32, progress=progress, label="MIL")

    def detector_params(self):
        """(h, T, d, sigma) for the detector: the catalogue's, with a caller's overrides key by key."""
        return {"sigma": 0.0, **self.entry.params.get("detector", {}), **self.params.get("detector", {})}

    def run(self, scan, progress=None):
        vol = scan.volume
        probs, maps = self.likelihood_maps(scan.crop_hu(AXIAL_CROP_SIZE), vol.spacing[2], progress)
        det = self.detector_params()
        head_crop = scan.crop.extract(scan.head.astype(np.float32), AXIAL_CROP_SIZE) > 0.5
        res = Results(input=vol.name, volume=vol)
        for k in range(len(maps)):
            rows, cols, vals = detect_peaks(maps[k], det["h"], det["T"], det["d"], mask=head_crop[k],
                                            sigma=det["sigma"])
            if not len(rows):
                continue
            jj, ii = scan.crop.crop_to_native(rows, cols, AXIAL_CROP_SIZE)
            ras = vol.ijk_to_ras_points(np.column_stack([ii, jj, np.full(len(ii), k)]))
            for p, v in zip(ras, vals):
                res.points.append(PointFinding("mil", p, float(v), k))
        scale = maps.reshape(len(maps), -1).max(axis=1)[:, None, None] if self.variant == "attention" else 1.0
        norm = maps / np.maximum(scale, 1e-12) * (probs[:, None, None] if self.variant == "attention" else 1.0)
        res.likelihood = scan.crop.paste(norm.astype(np.float32), vol.shape)
        res.slice_scores["mil"] = [float(p) for p in probs]
        return res
