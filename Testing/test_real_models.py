"""The default (real-trained) MIL on real scans it never saw: fold 4 of PHE-SICH, held out of its
training and of its detector's tuning. Skips cleanly without ../shared/data."""
import itertools

import numpy as np
import pytest

from conftest import shared


@pytest.fixture(scope="module")
def held_out_phe():
    shared("phe-sich")
    from ICHTrainingLib.datasets.real import real_scans

    with_boxes = (s for s in real_scans("phe", "folds=4") if any(s[3]))
    return list(itertools.islice(with_boxes, 3))


def test_default_mil_puts_its_points_in_held_out_hematoma_boxes(held_out_phe):
    from ICHLocalizationLib.models import Catalogue
    from ICHLocalizationLib.pipeline import Pipeline
    from ICHTrainingLib.metrics import point_in_box_counts, rates, roc_auc

    assert Catalogue.load().get("mil").id == "mil-maxpool-real"
    pipeline = Pipeline("mil", device="cpu")
    tp = fp = fn = 0
    labels, scores = [], []
    for _, fold, volume, boxes in held_out_phe:
        assert fold == 4
        res = pipeline.run(volume)
        by_slice = {}
        for p in res.points:
            i, j, _ = volume.ras_to_ijk_points(p.ras)[0]
            by_slice.setdefault(p.slice, []).append((j, i))
        for k, slice_boxes in enumerate(boxes):
            a, b, c = point_in_box_counts(by_slice.get(k, []), [(r0, r1, c0, c1) for r0, c0, r1, c1 in slice_boxes])
            tp, fp, fn = tp + a, fp + b, fn + c
        labels += [bool(b) for b in boxes]
        scores += res.slice_scores["mil"]
    assert rates(tp, fp, fn)["dice"] >= 0.6, (tp, fp, fn)
    assert roc_auc(labels, scores) >= 0.9
    assert np.isfinite(scores).all()
