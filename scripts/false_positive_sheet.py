"""Where the MIL looks on bleed-free real scans: for each bleed-free CT-ICH scan, its highest-scoring
slice, the likelihood map's peak there, the HU at the peak and the peak's place in the head.

    python scripts/false_positive_sheet.py K:CATALOGUE [K:CATALOGUE ...] [--out DIR]

Each K:CATALOGUE scores fold K with a catalogue that never saw it (an out-of-fold run's). Prints one
row per scan; with --out also writes sheet.png, the slices in the brain window with the peak circled
(real data: keep it out of the repository). What it showed is in docs/accuracy.md.
"""
import argparse
from pathlib import Path

import numpy as np

from ICHLocalizationLib.pipeline import Pipeline
from ICHLocalizationLib.preprocessing import head_mask
from ICHTrainingLib.datasets.real import real_scans

TILE = 256


def peak_place(volume, z, row, col):
    """The peak's offset from the centre of the head on its slice, in mm: (to the patient's right,
    to the back)."""
    rows, cols = np.nonzero(head_mask(volume.hu[z:z + 1])[0])
    centre, peak = volume.ijk_to_ras_points([[cols.mean(), rows.mean(), z], [col, row, z]])
    right, anterior = peak[:2] - centre[:2]
    return float(right), float(-anterior)


def bleed_free_peaks(fold, catalogue):
    """(volume, peak) per bleed-free scan of CT-ICH fold `fold`: the MIL's top slice and its map's peak."""
    pipeline = Pipeline(("mil",), models=catalogue)
    for patient, _, volume, _ in real_scans("ctich-jpg", f"folds={fold}"):
        if volume.metadata["slice_subtypes"].any():
            continue
        res = pipeline.run(volume)
        scores = np.asarray(res.slice_scores["mil"])
        z = int(scores.argmax())
        row, col = np.unravel_index(res.likelihood[z].argmax(), res.likelihood[z].shape)
        lr, ap = peak_place(volume, z, row, col)
        yield volume, {"patient": patient, "fold": fold, "slice": z, "slices": len(scores), "score": float(scores[z]),
                       "row": int(row), "col": int(col), "hu": float(volume.hu[z, row, col]), "lr_mm": lr, "ap_mm": ap}


def tile(volume, peak):
    """The peak's slice in the brain window, the peak circled, patient, slice and score written on it."""
    from PIL import Image, ImageDraw

    from ICHLocalizationLib.preprocessing import window

    grey = (window(volume.hu[peak["slice"]], "brain") * 255).astype(np.uint8)
    im = Image.fromarray(grey).convert("RGB")
    draw = ImageDraw.Draw(im)
    r, c = peak["row"], peak["col"]
    draw.ellipse([c - 15, r - 15, c + 15, r + 15], outline=(255, 0, 0), width=3)
    im = im.resize((TILE, TILE))
    ImageDraw.Draw(im).text((4, 4), f"{peak['patient']} z{peak['slice']} p{peak['score']:.2f}", fill=(255, 255, 0))
    return im


def main(argv=None):
    ap = argparse.ArgumentParser(prog="false_positive_sheet")
    ap.add_argument("runs", nargs="+", help="K:CATALOGUE, fold K scored with that catalogue")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    tiles = []
    for spec in args.runs:
        fold, catalogue = spec.split(":", 1)
        for volume, p in bleed_free_peaks(int(fold), catalogue):
            print(f"{p['patient']} fold {p['fold']}: slice {p['slice']}/{p['slices']} score {p['score']:.3f}, peak "
                  f"{p['hu']:.0f} HU, {p['lr_mm']:+.0f} mm right, {p['ap_mm']:+.0f} mm posterior of the head's centre")
            if args.out:
                tiles.append(tile(volume, p))
    if tiles:
        from PIL import Image

        args.out.mkdir(parents=True, exist_ok=True)
        per_row = 5
        sheet = Image.new("RGB", (TILE * per_row, TILE * ((len(tiles) + per_row - 1) // per_row)))
        for n, im in enumerate(tiles):
            sheet.paste(im, ((n % per_row) * TILE, (n // per_row) * TILE))
        sheet.save(args.out / "sheet.png")


if __name__ == "__main__":
    main()
