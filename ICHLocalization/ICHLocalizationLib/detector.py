"""Local-maxima detector of paper 001: likelihood map → lesion points.

Order (as in the authors' code): candidates are local maxima at least d pixels apart with value
above T (`skimage.feature.peak_local_max`); when h > 0 only candidates inside the h-maxima mask of
height h (`skimage.morphology.h_maxima`) are kept. Border: `peak_local_max` drops a band of width d
by default; we keep peaks up to the image border (exclude_border=False), because our maps are head
crops with a margin and epidural/subdural bleeds lie against the skull, near the crop's edge.

Ours, not in paper 001 or its code: with sigma > 0 the map is first smoothed by a Gaussian of sigma
pixels (`skimage.filters.gaussian`), tuned with (h, T, d). Our max-pool map is bilinearly upsampled
(×8 on the 256 grid) from the network's coarse logit map, so its maxima sit on the coarse nodes;
smoothing merges near-equal nodes of one response and lowers narrow spikes more than broad ones.
Two-fold validation Dice of the four-read max-pool map: 0.84 without, 0.85 at 1.5 px, 0.86 at 3 px,
0.80 at 6 px.
"""
import numpy as np


def detect_peaks(lmap: np.ndarray, h: float, T: float, d: int, mask: np.ndarray = None, sigma: float = 0.0):
    """(rows, cols, values) of the detected points in a 2D map (values read off the smoothed map)."""
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian
    from skimage.morphology import h_maxima

    lmap = np.asarray(lmap, dtype=np.float64)
    if sigma > 0:
        lmap = gaussian(lmap, sigma=float(sigma), mode="reflect", preserve_range=True)
    d = max(1, int(round(d)))
    if lmap.max() <= T:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    coords = peak_local_max(lmap, min_distance=d, threshold_abs=T, exclude_border=False)
    if len(coords) and h > 0:
        hm = h_maxima(lmap, h).astype(bool)
        coords = coords[hm[coords[:, 0], coords[:, 1]]]
    if len(coords) and mask is not None:
        coords = coords[mask[coords[:, 0], coords[:, 1]]]
    return coords[:, 0], coords[:, 1], lmap[coords[:, 0], coords[:, 1]]
