"""The bundled models on a phantom none of them saw: bleeds found at the right place, determinism,
and the GPU out-of-memory fallback."""
import numpy as np
import pytest
import torch

from ICHLocalizationLib.models import Catalogue, ModelError


def _pipeline(methods):
    from ICHLocalizationLib.pipeline import Pipeline

    try:
        Catalogue.load()
    except ModelError as exc:
        pytest.fail(f"bundled models missing: {exc}")
    return Pipeline(methods, device="cpu")


@pytest.fixture(scope="module")
def run(sample_phantom):
    pipe = _pipeline(("cascade", "mil", "unet"))
    return sample_phantom, pipe, pipe.run(sample_phantom.volume)


def _inside(p, box, margin=2.0):
    return all(box["min"][a] - margin <= p[a] <= box["max"][a] + margin for a in range(3))


def test_mil_points_lie_in_the_bleeds(run):
    ph, _, res = run
    assert res.points, "no MIL point"
    hits = [any(_inside(p.ras, l["bbox_ras"]) for l in ph.lesions) for p in res.points]
    assert np.mean(hits) >= 0.7
    bleed_slices = set(np.nonzero(ph.mask.any(axis=(1, 2)))[0])
    found = {p.slice for p in res.points}
    assert len(found & bleed_slices) >= 0.6 * len(bleed_slices)
    assert res.likelihood.shape == ph.volume.shape and 0 <= res.likelihood.min() and res.likelihood.max() <= 1


def test_unet_segments_the_bleeds(run):
    ph, _, res = run
    pred, truth = res.lesion_labels > 0, ph.mask > 0
    d = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert d >= 0.6, f"Dice {d:.2f}"
    for les in ph.lesions:
        near = [s for s in res.segments if _inside(s.centroid_ras, les["bbox_ras"])]
        assert near, f"{les['subtype']} not segmented"
        assert abs(sum(s.volume_ml for s in near) - les["volume_ml"]) / les["volume_ml"] < 0.35
        assert all(s.abc2_ml > 0 for s in near)
    assert len(res.slice_scores["unet"]) == ph.volume.shape[0]


def test_cascade_boxes_overlap_the_bleeds(run):
    from ICHTrainingLib.evaluate import match_boxes

    ph, _, res = run
    pred = [b.to_json() for b in res.boxes]
    matches, fps, fns = match_boxes(pred, ph.lesions, 0.25)
    assert len(matches) >= 2, (pred, ph.lesions)
    assert sum(pred[i]["subtype"] == ph.lesions[j]["subtype"] for i, j, _ in matches) >= 1


def test_same_input_same_findings(run):
    ph, pipe, res = run
    again = pipe.run(ph.volume)
    assert again.to_json()["findings"] == res.to_json()["findings"]
    assert again.slice_scores == res.slice_scores


def test_gpu_out_of_memory_falls_back_to_cpu(run, monkeypatch):
    ph, pipe, _ = run
    method = pipe.instances["mil"]
    original = method.run
    calls = {"n": 0}

    def flaky(scan, progress=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(scan, progress)

    monkeypatch.setattr(method, "run", flaky)
    messages = []
    pipe.log = messages.append
    res = pipe.run(ph.volume)
    assert calls["n"] == 2 and res.points
    assert any("out of memory" in w for w in res.warnings) and messages
