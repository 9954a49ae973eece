"""`make demo`: the bundled phantom sample through `ich-localize` with every method that has a model,
then a one-screen comparison of what was found with what the phantom holds."""
import argparse
import json
import sys
from pathlib import Path

from . import cli
from .models import Catalogue, ModelError
from .phantom import generate, write_phantom

SAMPLE_SEED = 7
SAMPLE_SUBTYPES = ["IPH", "IVH", "SAH", "SDH", "EDH"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="ich-demo")
    ap.add_argument("--out", default="demo-output")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    out = Path(args.out)
    sample = out / "sample"
    if not (sample / "ct.nii.gz").exists():
        write_phantom(generate(SAMPLE_SEED, subtypes=SAMPLE_SUBTYPES), sample, "nifti")
    try:
        methods = [m for m in ("cascade", "mil", "unet") if Catalogue.load().for_method(m)]
    except ModelError as exc:
        print(f"ich-demo: {exc}", file=sys.stderr)
        return 2
    code = cli.main([str(sample / "ct.nii.gz"), "--out", str(out / "results"), "--methods", ",".join(methods),
                     "--device", args.device, "--overwrite"])
    if code != 0:
        return code
    truth = json.loads((sample / "truth.json").read_text())
    found = json.loads((out / "results" / "ct" / "findings.json").read_text())
    print(summary(truth, found, out / "results" / "ct"))
    return 0


def summary(truth, found, folder):
    lines = ["", "ICH phantom (seed 7, synthetic): what it holds and what each method found", ""]
    lines.append(f"{'truth':<8}{'volume mL':>10}   centre RAS (mm)")
    for les in truth["lesions"]:
        lines.append(f"{les['subtype']:<8}{les['volume_ml']:>10.1f}   ({', '.join(f'{v:.0f}' for v in les['centroid_ras'])})")
    lines.append("")
    for run in found["runs"]:
        m = run["method"]
        fs = [f for f in found["findings"] if f["method"] == m]
        if m == "unet":
            by = {}
            for f in fs:
                n, ml, abc = by.get(f["subtype"], (0, 0.0, 0.0))
                by[f["subtype"]] = (n + 1, ml + f["volume_ml"], abc + f["abc2_ml"])
            desc = ", ".join(f"{st} {ml:.1f} mL in {n} segment(s) (ABC/2 {abc:.1f})" for st, (n, ml, abc) in sorted(by.items())) or "none"
        elif m == "cascade":
            desc = ", ".join(f"{f['subtype']} box p={f['probability']:.2f}" for f in fs) or "none"
        else:
            hits = sum(any(_inside(f["ras"], l["bbox_ras"]) for l in truth["lesions"]) for f in fs)
            desc = f"{len(fs)} points, {hits} inside a bleed's box"
        lines.append(f"{m:<8} {run['seconds']:>5.1f} s  {desc}")
    lines.append(f"\noutputs: {folder} (overview.png, findings.json/csv, points/boxes .mrk.json, segmentation.seg.nrrd, likelihood.nrrd)")
    lines.append("Research use only: not for diagnosis (accuracy on real CT: see the README).")
    return "\n".join(lines)


def _inside(p, box):
    return all(box["min"][a] - 1 <= p[a] <= box["max"][a] + 1 for a in range(3))


if __name__ == "__main__":
    sys.exit(main())
