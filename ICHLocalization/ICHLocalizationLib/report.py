"""Human-readable outputs: the overview PNG (key slices with findings drawn) and a text summary."""
from pathlib import Path

import numpy as np

from .findings import Results, subtype_info
from .preprocessing import window

TILE = 384


def key_slices(results: Results, n=4):
    """Axial slices worth showing: those with the most findings, then the highest slice scores."""
    vol = results.volume
    k_n = vol.shape[0]
    score = np.zeros(k_n)
    for vals in results.slice_scores.values():
        if len(vals) == k_n:
            score += np.asarray(vals)
    if results.lesion_labels is not None:
        score += 3 * (results.lesion_labels > 0).any(axis=(1, 2))
    for p in results.points:
        score[p.slice] += 1
    for b in results.boxes:
        lo, hi = b.bbox_ras
        ks = _slices_in_box(vol, lo, hi)
        score[ks] += 0.5
    order = np.argsort(-score, kind="stable")
    chosen = sorted(order[:n]) if score.max() > 0 else sorted(np.linspace(0, k_n - 1, min(n, k_n)).astype(int))
    return [int(k) for k in chosen]


def _slices_in_box(vol, lo, hi):
    centres = vol.ijk_to_ras_points(np.column_stack([np.full(vol.shape[0], vol.shape[2] / 2),
                                                     np.full(vol.shape[0], vol.shape[1] / 2), np.arange(vol.shape[0])]))
    return np.nonzero((centres[:, 2] >= lo[2]) & (centres[:, 2] <= hi[2]))[0]


def overview_png(results: Results, path, n_slices=4):
    """Key slices in the brain window with segment outlines, points and boxes; a legend line on top."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    vol = results.volume
    ks = key_slices(results, n_slices)
    tiles = []
    for k in ks:
        grey = (window(vol.hu[k], "brain") * 255).astype(np.uint8)
        rgb = np.stack([grey] * 3, axis=-1)
        if results.lesion_labels is not None:
            for seg in results.segments:
                m = results.lesion_labels[k] == seg.label
                if m.any():
                    edge = m & ~ndimage.binary_erosion(m, iterations=2)
                    rgb[edge] = (np.array(subtype_info(seg.subtype).color) * 255).astype(np.uint8)
        img = Image.fromarray(rgb)
        draw = ImageDraw.Draw(img)
        for b in results.boxes:
            lo, hi = b.bbox_ras
            if k not in _slices_in_box(vol, lo, hi):
                continue
            corners = vol.ras_to_ijk_points(b.corners_ras)
            x0, y0 = corners[:, 0].min(), corners[:, 1].min()
            x1, y1 = corners[:, 0].max(), corners[:, 1].max()
            col = tuple(int(255 * c) for c in subtype_info(b.subtype).color)
            draw.rectangle([x0, y0, x1, y1], outline=col, width=3)
            draw.text((x0 + 3, y0 + 2), f"{b.subtype} {b.probability:.2f}", fill=col)
        for p in results.points:
            if p.slice != k:
                continue
            i, j, _ = vol.ras_to_ijk_points(p.ras)[0]
            col = tuple(int(255 * c) for c in subtype_info(p.subtype).color)
            r = max(6, vol.shape[2] // 60)
            draw.line([i - r, j, i + r, j], fill=col, width=3)
            draw.line([i, j - r, i, j + r], fill=col, width=3)
        img = img.resize((TILE, int(TILE * vol.shape[1] / max(1, vol.shape[2]))))
        ImageDraw.Draw(img).text((6, 6), f"slice {k + 1}/{vol.shape[0]}", fill=(255, 255, 0))
        tiles.append(img)
    h = max(t.size[1] for t in tiles)
    header = 56
    notes = _warning_lines(results.warnings, TILE * len(tiles) // 7)
    canvas = Image.new("RGB", (TILE * len(tiles), h + header + 16 * len(notes) + (8 if notes else 0)), (0, 0, 0))
    for n, t in enumerate(tiles):
        canvas.paste(t, (n * TILE, header))
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(notes):
        draw.text((8, h + header + 4 + 16 * n), line, fill=(255, 90, 60))
    draw.text((8, 6), f"{Path(str(results.input)).name}: " + summary_line(results), fill=(255, 255, 255))
    draw.text((8, 24), "Research use only: not for diagnosis (accuracy on real CT: see the README).", fill=(255, 160, 0))
    x = 8
    for code in ("IPH", "IVH", "SAH", "SDH", "EDH", "ICH"):
        info = subtype_info(None if code == "ICH" else code)
        draw.rectangle([x, 42, x + 10, 52], fill=tuple(int(255 * c) for c in info.color))
        draw.text((x + 14, 40), code, fill=(220, 220, 220))
        x += 60
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _warning_lines(warnings, width):
    """Each warning as 'Warning: …', wrapped to the canvas width (characters)."""
    import textwrap

    return [line for w in warnings for line in textwrap.wrap(f"Warning: {w}", width)]


def summary_line(results: Results) -> str:
    parts = []
    segs = {}
    for s in results.segments:
        segs[s.subtype] = segs.get(s.subtype, 0.0) + s.volume_ml
    if segs:
        parts.append("segments " + ", ".join(f"{k} {v:.1f} mL" for k, v in sorted(segs.items())))
    if results.boxes:
        parts.append("boxes " + ", ".join(sorted({b.subtype or "ICH" for b in results.boxes})))
    if any(r.method == "mil" for r in results.runs):
        parts.append(f"{len(results.points)} point(s)")
    scores = {m: max(v) for m, v in results.slice_scores.items() if v}
    if scores:
        parts.append("max P(ICH) " + ", ".join(f"{m} {v:.2f}" for m, v in scores.items()))
    return "; ".join(parts) or "no findings"


def text_summary(results: Results) -> str:
    lines = [f"{results.input}: {summary_line(results)}"]
    for f in results.segments:
        lines.append(f"  {f.subtype}: {f.volume_ml:.1f} mL (ABC/2 {f.abc2_ml:.1f} mL), p={f.probability:.2f}, "
                     f"centre RAS ({', '.join(f'{v:.0f}' for v in f.centroid_ras)})")
    for b in results.boxes:
        lines.append(f"  box {b.subtype}: {' × '.join(f'{v:.0f}' for v in b.size_mm)} mm, p={b.probability:.2f}")
    for w in results.warnings:
        lines.append(f"  note: {w}")
    return "\n".join(lines)
