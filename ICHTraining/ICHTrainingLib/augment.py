"""Augmentations of paper 001 (MIL authors' settings) as MONAI transforms, applied in HU before windowing.

mirror left-right, affine (rotation ±30°, scale ±10 %, shear ≤ 0.05, shift), intensity ×(1 ± 0.02),
offset ±20 HU, Gaussian blur or sharpening (σ ≤ 0.5 px). One addition of ours: with probability
`p_windowed` the slice is clipped to the brain window, as an 8-bit windowed export (Kaggle PNGs,
CT-ICH JPGs) would give it, so that the networks also read windowed images.
"""
from typing import Optional

import numpy as np
from monai.transforms import MapTransform, RandomizableTransform


class WindowedExport(RandomizableTransform, MapTransform):
    """Clip HU to a window (an 8-bit export keeps nothing outside it). Randomizable, so that the
    seed of the Compose around it decides which slices are clipped: a run can be repeated."""

    def __init__(self, prob=0.2, window=(0.0, 80.0), keys=("image",)):
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.window = window

    def __call__(self, data):
        self.randomize(None)
        if not self._do_transform:
            return data
        data = dict(data)
        for k in self.key_iterator(data):
            data[k] = np.clip(data[k], *self.window)
        return data


def slice_augmentation(with_label: bool, seed: int = 0, p_windowed: float = 0.2, rotate_deg: float = 30.0,
                       spatial_axis_lr: Optional[int] = 1):
    """MONAI dictionary transform on {'image': (1, H, W) HU[, 'label': (1, H, W)]}.

    spatial_axis_lr: the image axis that runs left-right (mirrored with probability 0.5), or None
    for a slice with no left-right axis (sagittal)."""
    from monai.transforms import (Compose, OneOf, RandAffined, RandFlipd, RandGaussianSharpend,
                                  RandGaussianSmoothd, RandScaleIntensityd, RandShiftIntensityd)

    keys = ("image", "label") if with_label else ("image",)
    modes = ("bilinear", "nearest") if with_label else ("bilinear",)
    pads = ("border", "zeros") if with_label else ("border",)
    mirror = [] if spatial_axis_lr is None else [RandFlipd(keys, prob=0.5, spatial_axis=spatial_axis_lr)]
    t = Compose(mirror + [
        RandAffined(keys, prob=0.7, rotate_range=np.radians(rotate_deg), scale_range=0.1, shear_range=0.05,
                    translate_range=8, mode=modes, padding_mode=pads),
        RandScaleIntensityd("image", factors=0.02, prob=0.5),
        RandShiftIntensityd("image", offsets=20.0, prob=0.5),
        OneOf([RandGaussianSmoothd("image", sigma_x=(0.1, 0.5), sigma_y=(0.1, 0.5), prob=1.0),
               RandGaussianSharpend("image", sigma1_x=(0.3, 0.5), sigma1_y=(0.3, 0.5), sigma2_x=0.3,
                                    sigma2_y=0.3, alpha=(0.0, 0.5), prob=1.0)], weights=(0.5, 0.5)),
        WindowedExport(p_windowed),
    ])
    t.set_random_state(seed)
    return t
