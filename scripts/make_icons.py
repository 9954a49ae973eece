"""Draws the extension and module icons from a phantom slice (brain window, bleed in red)."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ICHLocalizationLib.phantom import generate
from ICHLocalizationLib.preprocessing import window

ROOT = Path(__file__).resolve().parent.parent


def icon(size, k_offset=0, badge=None):
    ph = generate(7, subtypes=["IPH", "SDH"], size=256, slices=32)
    k = int(np.argmax((ph.mask > 0).sum(axis=(1, 2)))) + k_offset
    g = (window(ph.volume.hu[k], "brain") * 255).astype(np.uint8)
    rgb = np.stack([g] * 3, -1)
    rgb[ph.mask[k] > 0] = (0.35 * rgb[ph.mask[k] > 0] + 0.65 * np.array([230, 40, 40])).astype(np.uint8)
    jj, ii = np.nonzero(ph.volume.hu[k] > -300)
    crop = rgb[max(jj.min() - 4, 0):jj.max() + 4, max(ii.min() - 4, 0):ii.max() + 4]
    img = Image.fromarray(crop).resize((size, size), Image.LANCZOS)
    if badge:
        d = ImageDraw.Draw(img)
        d.rounded_rectangle([size * 0.55, size * 0.72, size * 0.98, size * 0.98], radius=size // 16, fill=(20, 20, 20))
        d.text((size * 0.6, size * 0.76), badge, fill=(255, 200, 0))
    return img


if __name__ == "__main__":
    icon(128).save(ROOT / "ICHExtension.png")
    icon(128).save(ROOT / "ICHLocalization" / "Resources" / "Icons" / "ICHLocalization.png")
    icon(128, badge="train").save(ROOT / "ICHTraining" / "Resources" / "Icons" / "ICHTraining.png")
