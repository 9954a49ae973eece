"""README figures.

docs/overview.png          the overview of the demo phantom (ours to publish)
docs/overview-real.png     the overview of a real CT-ICH v1.0.0 scan (patient 080, held out of every real-data
                            training fold), committed with its attribution: CC BY 4.0 allows it
docs/phantom-histograms.png HU histograms inside the head: phantom vs the real CT-ICH slices (statistics only)
docs/phantom-vs-real.png    a phantom slice beside a real CT-ICH slice — written locally, never committed
                            (.gitignore): the real slice is not ours to redistribute
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHARED = ROOT.parent / "shared" / "data" / "ct-ich-slices"


def main():
    from ICHLocalizationLib.io import read_volume
    from ICHLocalizationLib.phantom import generate
    from ICHLocalizationLib.preprocessing import window

    DOCS.mkdir(exist_ok=True)
    demo = ROOT / "demo-output" / "results" / "ct" / "overview.png"
    if demo.exists():
        shutil.copy2(demo, DOCS / "overview.png")
    ph = generate(7, subtypes=["IPH", "IVH", "SAH", "SDH", "EDH"])
    k = int(np.argmax((ph.mask > 0).sum(axis=(1, 2))))
    phantom_slice = ph.volume.hu[k]
    if not SHARED.exists():
        print(f"no real data at {SHARED}: only the overview was made", file=sys.stderr)
        return 0
    from ICHTrainingLib.datasets.ctich import read_mask_dicom, read_slice_subset

    items = read_slice_subset(SHARED)
    real = [read_volume(it["image"], spacing=(0.45, 0.45, 5.0)).hu[0] for it in items]
    masks = [read_mask_dicom(it["mask"]) for it in items]
    # histograms (statistics, committed)
    bins = np.arange(-20, 101, 2)
    ph_head = ph.volume.hu[(ph.volume.hu > -20) & (ph.volume.hu < 100)]
    re_head = np.concatenate([r[(r > -20) & (r < 100)] for r in real])
    ph_blood = ph.volume.hu[ph.mask > 0]
    re_blood = np.concatenate([r[m] for r, m in zip(real, masks)])
    W, H = 720, 300
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    for n, (a, b, title) in enumerate([(ph_head, re_head, "inside the head, -20..100 HU"), (ph_blood, re_blood, "blood (mask)")]):
        x0 = 20 + n * 360
        ha = np.histogram(a, bins)[0] / max(1, len(a))
        hb = np.histogram(b, bins)[0] / max(1, len(b))
        top = max(ha.max(), hb.max())
        bw = 320 / len(ha)
        for i, (va, vb) in enumerate(zip(ha, hb)):
            d.rectangle([x0 + i * bw, 260 - 220 * va / top, x0 + i * bw + bw / 2, 260], fill=(220, 60, 60))
            d.rectangle([x0 + i * bw + bw / 2, 260 - 220 * vb / top, x0 + (i + 1) * bw, 260], fill=(60, 90, 220))
        d.text((x0, 8), title, fill="black")
        d.text((x0, 270), "-20 HU", fill="black")
        d.text((x0 + 290, 270), "100 HU", fill="black")
    d.text((20, 285), "red: phantom seed 7   blue: 26 real CT-ICH slices", fill="black")
    img.save(DOCS / "phantom-histograms.png")
    # side by side (local only)
    j = int(np.argmax([m.sum() for m in masks]))
    tiles = [Image.fromarray((window(s, "brain") * 255).astype(np.uint8)).resize((384, 384)) for s in (phantom_slice, real[j])]
    pair = Image.new("L", (768, 400))
    for n, t in enumerate(tiles):
        pair.paste(t, (n * 384, 16))
    ImageDraw.Draw(pair).text((4, 2), "phantom (seed 7)", fill=255)
    ImageDraw.Draw(pair).text((388, 2), "real CT-ICH slice (not redistributed)", fill=255)
    pair.save(DOCS / "phantom-vs-real.png")
    return 0


ATTRIBUTION = "PhysioNet CT-ICH v1.0.0, Hssayeni et al. 2020, CC BY 4.0"


def real_overview(patient="080"):
    """ich-localize with the bundled models on one CT-ICH JPG scan; its overview, attributed."""
    import tempfile

    from ICHLocalizationLib import cli
    from ICHTrainingLib.datasets import ctich_jpg

    folder = ROOT.parent / "shared" / "data" / "ct-ich-jpg"
    if not folder.exists():
        print(f"no real data at {folder}: no real overview", file=sys.stderr)
        return
    volume, _ = ctich_jpg.read_scan(folder, patient)
    with tempfile.TemporaryDirectory() as tmp:  # the scan never leaves this folder
        scan = Path(tmp) / f"ctich-{patient}.nii.gz"
        import SimpleITK as sitk

        sitk.WriteImage(volume.to_sitk(volume.hu.astype(np.int16)), str(scan))
        cli.main([str(scan), "--out", str(Path(tmp) / "out"), "--device", "cpu"])
        img = Image.open(Path(tmp) / "out" / scan.name.replace(".nii.gz", "") / "overview.png").convert("RGB")
    canvas = Image.new("RGB", (img.width, img.height + 18), "black")
    canvas.paste(img, (0, 0))
    ImageDraw.Draw(canvas).text((8, img.height + 3), f"Real scan: {ATTRIBUTION}", fill=(200, 200, 200))
    canvas.save(DOCS / "overview-real.png")


if __name__ == "__main__":
    if "--real" in sys.argv:
        real_overview()
        sys.exit(0)
    sys.exit(main())
