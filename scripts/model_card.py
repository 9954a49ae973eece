"""Writes ICHLocalization/Resources/Models/MODEL_CARD.md from catalogue.json (each entry's held-out
figures as tables) and from report.json files of ich-evaluate given on the command line, so the card
never drifts from what ships."""
import json
import sys
from pathlib import Path

from ICHLocalizationLib.models import Catalogue


def main(reports):
    cat = Catalogue.load()
    lines = ["# Bundled models", "",
             "Research tools, not medical devices. Weights are plain state dicts loaded with `weights_only=True` after a sha256 check.", "",
             "**Data.** The `-phantom` models learned from synthetic phantoms made by `ich-phantom` only",
             "(seeds 1–120, and 151–300 for the cascade's second round, with a 15 % patient-level validation split; 121–150 for",
             "post-processing tuning; 9001–9010 evaluated on, never trained or tuned on). `mil-maxpool-real` started from",
             "`mil-maxpool-phantom`, the slice gate of `unet-gate-real+phantom` from that of `unet-phantom` (whose U-Net it",
             "keeps unchanged), `unet-real+phantom` from `unet-gate-real+phantom` (its U-Net learning from the clots inside",
             "PHE's boxes and from bleed-free real slices), `cascade-real+phantom` from `cascade-phantom` (phantoms 1–40 beside",
             "the real scans for both); they learned from real scans with slice labels and PHE's boxes only: PhysioNet CT-ICH",
             "v1.0.0",
             "(Hssayeni et al. 2020, doi:10.13026/w8q8-ky94, CC BY 4.0 — attribution required) and PHE-SICH-CT-IDS (Computers in",
             "Biology and Medicine 2024; research use as published with the dataset). The shipped real weights learned from all",
             "five folds; each recipe was first trained and tuned on folds 0–3 and measured on fold 4, and those fold-4 figures",
             "(\"held out\" below, with the sha256 of the weights they were measured on) are its out-of-fold estimate. The MIL",
             "recipe was also run once per other held-out fold, so its figures are out of fold for all 130 patients. The",
             "shipped weights keep the post-processing tuned on folds 0–3. Folds: `ICHTraining/ICHTrainingLib/datasets/folds.json`.", ""]
    for e in cat.entries:
        lines += [f"## {e.id} ({e.method}, version {e.version}{', default' if e.default else ''})", ""]
        for role, spec in e.files.items():
            size = (cat.directory / spec["file"]).stat().st_size / 1e6
            lines.append(f"- file `{spec['file']}` ({size:.1f} MB), sha256 `{spec['sha256']}`")
        t = e.training
        twins = f", and the bleed-free twins of those {t['bleed_free_twins']}" if t.get("bleed_free_twins") else ""
        lines.append(f"- data: {', '.join(t.get('data', []))} ({t.get('scans')} scans, {t.get('train_scans')} for training{twins})")
        lines.append(f"- command: `{t.get('command')}` ({t.get('epochs')} epochs, {t.get('seconds')} s on {t.get('device')})")
        if t.get("init"):
            lines.append(f"- fine-tuned from `{t['init']['file']}` (sha256 `{t['init']['sha256']}`; "
                         "scripts/train_models.sh has the command that made it)")
        lines.append(f"- input: `{json.dumps(e.input)}`")
        lines.append(f"- parameters: `{json.dumps(e.params)}`")
        lines.append(f"- metrics: `{json.dumps({k: v for k, v in e.metrics.items() if k != 'held_out'})}`")
        lines.append("")
        held_out = dict(e.metrics.get("held_out", {}))
        note = f"{held_out.pop('data', '')}; {held_out.pop('weights', 'these weights')}"
        for dataset, metrics in held_out.items():
            lines += metrics_table(f"Held out: {dataset} — {e.id} ({note})", metrics)
    for arg in reports:  # PATH or "LABEL::PATH" (which models the report scored)
        label, _, path = arg.rpartition("::")
        rep = json.loads(Path(path).read_text())
        lines += metrics_table(f"Evaluation: {rep['dataset']}" + (f" — {label}" if label else ""), rep["metrics"])
    (cat.directory / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    return 0


def metrics_table(title, metrics):
    """Markdown lines of one ich-evaluate metrics dict: {protocol: {metric: {value, ci95}}}."""
    lines = [f"### {title}", "", "| protocol | metric | value | 95 % CI |", "|---|---|---|---|"]
    for group, by_name in metrics.items():
        for name, m in by_name.items():
            ci, v = m.get("ci95"), m["value"]
            lines.append(f"| {group} | {name} | {v:.3f} | {'' if not ci else f'{ci[0]:.3f}–{ci[1]:.3f}'} |"
                         if isinstance(v, float) else f"| {group} | {name} | {v} | |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
