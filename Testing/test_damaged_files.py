"""A damaged or incomplete file never yields findings: each one of the generated corpus is refused
with one line that names it, its whole counterpart is read, and a batch records the refusal and
goes on. A series with a slice missing from its middle is refused unless --allow-gaps."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import damaged_inputs
from ICHLocalizationLib.io import read_volume
from ICHLocalizationLib.volume import InputError

BIN = Path(sys.executable).parent
PNG_SPACING = ["--spacing", "0.5,0.5,5"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    return folder, damaged_inputs(folder)


def _spacing(path):
    return (0.5, 0.5, 5.0) if path.suffix in (".png", ".jpg") else None


def test_every_damaged_file_is_refused_with_its_name(corpus):
    _, cases = corpus
    for what, (path, words) in cases.items():
        with pytest.raises(InputError) as refused:
            read_volume(path, spacing=_spacing(path))
        message = str(refused.value)
        assert words.lower() in message.lower(), (what, message)
        assert "\n" not in message and len(message) < 300, (what, message)


def test_the_whole_files_are_read(corpus):
    """The checks refuse damage, not formats: every undamaged source of the corpus reads."""
    folder, _ = corpus
    for name in ("whole.nii.gz", "whole.nii", "whole.nrrd", "whole.mha", "series", "whole.png", "whole.jpg"):
        volume = read_volume(folder / name, spacing=_spacing(folder / name))
        assert volume.hu.shape[1:] == (128, 128), name
        assert not any("missing" in w for w in volume.warnings), name


def test_a_gap_is_filled_only_when_allowed(corpus):
    folder, _ = corpus
    whole = read_volume(folder / "series")
    filled = read_volume(folder / "gap", allow_gaps=True)
    assert filled.hu.shape == whole.hu.shape
    np.testing.assert_allclose(filled.ijk_to_ras, whole.ijk_to_ras, atol=1e-4)
    np.testing.assert_allclose(filled.hu[4], (whole.hu[3] + whole.hu[5]) / 2, atol=1e-3)
    np.testing.assert_array_equal(filled.hu[5:], whole.hu[5:])
    position = whole.ijk_to_lps[2, 2] * 4 + whole.ijk_to_lps[2, 3]
    assert any(f"{position:.1f} mm" in w and "interpolation" in w for w in filled.warnings), filled.warnings


def test_a_batch_records_every_damaged_file_and_goes_on(corpus, untrained_models, tmp_path):
    folder, cases = corpus
    paths = [p for p, _ in cases.values()] + [folder / "whole.nii.gz"]
    out = tmp_path / "out"
    proc = subprocess.run([str(BIN / "ich-localize"), *map(str, paths), "--out", str(out), "--methods", "mil",
                           "--device", "cpu", "--models", str(untrained_models), *PNG_SPACING],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {Path(r["input"]): r for r in csv.DictReader(open(out / "summary.csv"))}
    for what, (path, words) in cases.items():
        assert rows[path]["status"] == "failed" and words.lower() in rows[path]["detail"].lower(), what
    assert rows[folder / "whole.nii.gz"]["status"] == "ok"
    assert [p.parent.name for p in out.rglob("findings.json")] == ["whole"], "findings only for the whole file"
    refusals = [line for line in proc.stderr.splitlines() if "damaged" in line or "missing" in line]
    assert len(refusals) == len(cases), "one line per damaged file"


def test_allow_gaps_runs_with_the_missing_positions_in_findings_and_overview(corpus, untrained_models, tmp_path):
    import json

    from PIL import Image

    folder, _ = corpus
    out = tmp_path / "out"
    proc = subprocess.run([str(BIN / "ich-localize"), str(folder / "series"), str(folder / "gap"), "--allow-gaps",
                           "--out", str(out), "--methods", "mil", "--device", "cpu", "--models", str(untrained_models)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    warnings = json.loads((out / "gap" / "findings.json").read_text())["warnings"]
    assert any("missing" in w and "interpolation" in w for w in warnings), warnings
    heights = [Image.open(out / case / "overview.png").size[1] for case in ("series", "gap")]
    assert heights[1] > heights[0], "the overview shows the warning below the slices"
