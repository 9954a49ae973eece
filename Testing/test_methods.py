"""The bundled models on a phantom none of them saw: bleeds found at the right place, determinism,
and the GPU out-of-memory fallback. The MIL tests name the phantom-trained MIL: the default MIL,
trained on real scans and tuned on real IPH, is tested on real scans (test_real_models.py)."""
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
    return Pipeline(methods, device="cpu", model_ids={"mil": PHANTOM_MIL, "cascade": PHANTOM_CASCADE,
                                                      "unet": PHANTOM_UNET})


# These tests check each method's mechanics against a phantom's perfect truth, so they read the
# phantom-tuned models; the real-trained defaults' phantom figures are in docs/accuracy.md (their
# post-processing is tuned for real scans: the real cascade calls the sample's EDH a SAH, and the
# U-Net with the real gate scores slices by gate × evidence).
PHANTOM_MIL = "mil-maxpool-phantom"
PHANTOM_CASCADE = "cascade-phantom"
PHANTOM_UNET = "unet-phantom"


@pytest.fixture(scope="module")
def run(sample_phantom):
    pipe = _pipeline(("cascade", "mil", "unet"))
    return sample_phantom, pipe, pipe.run(sample_phantom.volume)


def _inside(p, box, margin=2.0):
    return all(box["min"][a] - margin <= p[a] <= box["max"][a] + margin for a in range(3))


def test_mil_ranks_bleed_slices_and_maps_the_volume(run):
    ph, _, res = run
    scores = np.array(res.slice_scores["mil"])
    bleed = ph.mask.any(axis=(1, 2))
    assert scores[bleed].mean() > scores[~bleed].mean() + 0.1
    assert res.points, "the tuned detector reports points"
    assert res.likelihood.shape == ph.volume.shape and 0 <= res.likelihood.min() and res.likelihood.max() <= 1


def test_mil_points_lie_in_the_bleeds(run):
    ph, _, res = run
    hits = [any(_inside(p.ras, l["bbox_ras"]) for l in ph.lesions) for p in res.points]
    assert np.mean(hits) >= 0.7, f"{np.mean(hits):.2f} of {len(hits)} points in a lesion's box"


def test_bundled_attention_model_finds_the_bleeds_too(run):
    """The gated-attention variant (not the default) with its own tuned detector: most of its points
    lie in a lesion, and it points at more than one lesion of the sample."""
    from ICHLocalizationLib.methods.weakly_supervised import WeaklySupervisedDetector
    from ICHLocalizationLib.models import load_state
    from ICHLocalizationLib.preprocessing import PreparedScan

    ph, _, _ = run
    entry = Catalogue.load().get("mil", "mil-attention-phantom")
    res = WeaklySupervisedDetector(entry, load_state(entry), "cpu").run(PreparedScan(ph.volume))
    hits = [[_inside(p.ras, l["bbox_ras"]) for l in ph.lesions] for p in res.points]
    assert res.points and np.mean([any(h) for h in hits]) >= 0.6, f"{len(res.points)} points"
    assert sum(any(h[i] for h in hits) for i in range(len(ph.lesions))) >= min(2, len(ph.lesions))


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


def test_unet_lesions_ivh_and_sah_pieces_are_one_lesion():
    """Two IPH blobs are two lesions; two IVH blobs (both lateral ventricles) are one IVH lesion
    with the summed volume; a speck under the minimum size is dropped."""
    from ICHLocalizationLib.findings import Results
    from ICHLocalizationLib.methods.unet_segmenter import UNetSegmenter
    from ICHLocalizationLib.volume import CTVolume

    vol = CTVolume(np.zeros((8, 64, 64), np.float32), np.diag([0.5, 0.5, 5.0, 1.0]))  # 0.00125 mL voxels
    mask, sub = np.zeros(vol.shape, bool), np.zeros(vol.shape, np.uint8)
    for (j, i), code in (((5, 5), 1), ((5, 45), 1), ((45, 5), 2), ((45, 45), 2)):
        mask[2:6, j:j + 10, i:i + 10] = True  # 400 voxels = 0.5 mL
        sub[2:6, j:j + 10, i:i + 10] = code
    mask[7, 30, 30] = True
    sub[7, 30, 30] = 2
    res = Results(input="t", volume=vol)
    res.lesion_labels = np.zeros(vol.shape, np.uint16)
    UNetSegmenter._components(res, vol, mask, np.full(vol.shape, 0.9, np.float32), sub, 0.05)
    found = sorted((s.subtype, round(s.volume_ml, 3)) for s in res.segments)
    assert found == [("IPH", 0.5), ("IPH", 0.5), ("IVH", 1.0)]
    ivh = next(s for s in res.segments if s.subtype == "IVH")
    assert (res.lesion_labels == ivh.label).sum() == 800 and res.lesion_labels[7, 30, 30] == 0
    assert ivh.bbox_min_ras[0] < 5 and ivh.bbox_max_ras[0] > 20  # its box spans both ventricles


@pytest.fixture(scope="module")
def unet_maps(run):
    """The U-Net method, the prepared sample scan and its network maps (post-processing tests)."""
    from ICHLocalizationLib.preprocessing import PreparedScan

    ph, pipe, _ = run
    unet = pipe.instances["unet"]
    scan = PreparedScan(ph.volume)
    return unet, scan, unet.probabilities(scan)


def test_unet_gate_override_keeps_slices_the_unet_is_sure_of(run, unet_maps):
    """A gate that rejects every slice empties the segmentation, unless gate_override lets the
    slices whose own evidence reaches it through: then the bleeds come back, and only on those slices."""
    ph = run[0]
    unet, scan, maps = unet_maps
    rejected = maps._replace(gate=np.zeros_like(maps.gate))
    truth = ph.mask > 0
    assert not unet.segment(scan, rejected, {"gate_threshold": 0.5, "gate_override": None}).lesion_labels.any()
    res = unet.segment(scan, rejected, {"gate_threshold": 0.5, "gate_override": 0.9})
    pred = res.lesion_labels > 0
    assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) >= 0.6
    sure = np.array(res.slice_scores["unet"]) >= 0.9
    assert pred.any(axis=(1, 2))[~sure].sum() == 0 and sure.sum() < len(sure)


def test_unet_slice_score_weighted_by_a_real_trained_gate(unet_maps):
    """slice_score gate_x_evidence: a slice the gate rejects scores 0, one it accepts keeps its evidence."""
    unet, scan, maps = unet_maps
    gate = np.zeros_like(maps.gate)
    gate[::2] = 1.0
    plain = np.array(unet.segment(scan, maps._replace(gate=gate)).slice_scores["unet"])
    weighted = np.array(unet.segment(scan, maps._replace(gate=gate), {"slice_score": "gate_x_evidence"}).slice_scores["unet"])
    assert np.allclose(weighted[::2], plain[::2]) and not weighted[1::2].any() and plain[1::2].any()


def test_unet_bone_ceiling_keeps_the_mask_out_of_the_skull(run, unet_maps):
    """A foreground map grown past every bleed (2 px of the 256 crop, ~1.6 mm) reaches into the skull;
    bone_hu takes out the voxels brighter than it and keeps the blood."""
    from scipy import ndimage

    ph = run[0]
    unet, scan, maps = unet_maps
    hu, truth = ph.volume.hu, ph.mask > 0
    grown = ndimage.binary_dilation(maps.fg >= 0.5, np.ones((1, 5, 5), bool))
    spill = maps._replace(fg=grown.astype(np.float32), gate=np.ones_like(maps.gate))
    params = {"threshold": 0.5, "gate_threshold": 0.0, "closing_mm": 0.0, "opening_mm": 0.0, "min_volume_ml": 0.0}
    loose = unet.segment(scan, spill, {**params, "bone_hu": None}).lesion_labels > 0
    tight = unet.segment(scan, spill, {**params, "bone_hu": 700.0}).lesion_labels > 0
    assert (loose & (hu > 700)).sum() > 500, "the grown map should reach the skull on this sample"
    assert not (tight & (hu > 700)).any()
    assert (tight & truth).sum() >= 0.95 * (loose & truth).sum()


def test_unet_mirror_pass_makes_the_maps_left_right_equivariant(run, monkeypatch):
    """With `mirror`, a mirrored head gives the mirrored softmax maps (the sliding windows alone do
    not: their 128-pixel tiles sit asymmetrically on the 256 crop)."""
    ph, pipe, _ = run
    unet = pipe.instances["unet"]
    from ICHLocalizationLib.preprocessing import PreparedScan, slices_in_context

    hu = PreparedScan(ph.volume).crop_hu(256)
    k = int(np.argmax((ph.mask > 0).sum(axis=(1, 2))))
    x = torch.from_numpy(np.ascontiguousarray(
        slices_in_context(hu, [k, k + 1], ph.volume.spacing[2], unet.context_mm), dtype=np.float32))
    flip = lambda t: torch.flip(t, dims=[-1])  # noqa: E731
    with torch.inference_mode():
        monkeypatch.setitem(unet.params, "mirror", True)
        assert torch.allclose(unet._segment(flip(x)), flip(unet._segment(x)), atol=1e-6)
        monkeypatch.setitem(unet.params, "mirror", False)
        assert not torch.allclose(unet._segment(flip(x)), flip(unet._segment(x)), atol=1e-4)


@pytest.mark.parametrize("mirror, sizes, flip_axes", [(True, [128], [(2,)]), ("lr+ap", [128], [(2,), (1,), (1, 2)]),
                                                     ("lr+ap", [128, 160], [(2,), (1, 2)])])
def test_mil_mirror_reads_make_the_maps_flip_equivariant(run, monkeypatch, mirror, sizes, flip_axes):
    """With `mirror`, a flipped head gives the flipped likelihood maps and the same slice scores,
    also when each slice is read at several sizes; one read alone does not (the network is not
    symmetric)."""
    ph, pipe, _ = run
    mil = pipe.instances["mil"]
    from ICHLocalizationLib.preprocessing import PreparedScan

    hu = PreparedScan(ph.volume).crop_hu(256)
    k = int(np.argmax((ph.mask > 0).sum(axis=(1, 2))))
    x = np.ascontiguousarray(hu[k - 1:k + 2], dtype=np.float32)
    monkeypatch.setitem(mil.params, "read_sizes", sizes)
    for axes in flip_axes:
        flipped = np.ascontiguousarray(np.flip(x, axes))
        monkeypatch.setitem(mil.params, "mirror", mirror)
        p, m = mil.likelihood_maps(x)
        p_f, m_f = mil.likelihood_maps(flipped)
        assert m.shape == (3, 256, 256)
        np.testing.assert_allclose(m_f, np.flip(m, axes), atol=1e-5)
        np.testing.assert_allclose(p_f, p, atol=1e-5)
        monkeypatch.setitem(mil.params, "mirror", False)
        _, m = mil.likelihood_maps(x)
        _, m_f = mil.likelihood_maps(flipped)
        assert np.abs(m_f - np.flip(m, axes)).max() > 1e-3


def test_mil_reads_at_a_larger_size_change_the_map_and_average_it(run, monkeypatch):
    """read_sizes [128, 160] averages the read at 128 with one at 160, which gives a different map."""
    ph, pipe, _ = run
    mil = pipe.instances["mil"]
    from ICHLocalizationLib.preprocessing import PreparedScan

    hu = PreparedScan(ph.volume).crop_hu(256)
    k = int(np.argmax((ph.mask > 0).sum(axis=(1, 2))))
    x = np.ascontiguousarray(hu[k:k + 1], dtype=np.float32)
    monkeypatch.setitem(mil.params, "mirror", False)
    maps = {}
    for sizes in ([128], [160], [128, 160]):
        monkeypatch.setitem(mil.params, "read_sizes", sizes)
        maps[len(sizes), sizes[0]] = mil.likelihood_maps(x)[1]
    m128, m160, both = maps[1, 128], maps[1, 160], maps[2, 128]
    assert np.abs(m160 - m128).max() > 1e-2
    np.testing.assert_allclose(both, (m128 + m160) / 2, atol=1e-5)


@pytest.mark.parametrize("param, value", [("mirror", "ap"), ("read_sizes", [128, 16]), ("read_sizes", 160)])
def test_mil_refuses_an_unknown_read_setting(param, value):
    from ICHLocalizationLib.methods.weakly_supervised import WeaklySupervisedDetector
    from ICHLocalizationLib.models import load_state

    entry = Catalogue.load().get("mil")
    entry.params = {**entry.params, param: value}
    with pytest.raises(ModelError, match=f"params.{param}"):
        WeaklySupervisedDetector(entry, load_state(entry), "cpu")


def test_mil_detector_overrides_replace_only_the_keys_given():
    """The Slicer widget overrides h, T and d; the tuned smoothing stays."""
    from ICHLocalizationLib.methods.weakly_supervised import WeaklySupervisedDetector
    from ICHLocalizationLib.models import load_state

    entry = Catalogue.load().get("mil")
    tuned = entry.params["detector"]
    mil = WeaklySupervisedDetector(entry, load_state(entry), "cpu", {"detector": {"h": 0.1, "T": 0.5, "d": 3}})
    assert mil.detector_params() == {"h": 0.1, "T": 0.5, "d": 3, "sigma": tuned["sigma"]} and tuned["sigma"] > 0


def _cascade_matches(run, iou):
    from ICHTrainingLib.metrics import match_boxes

    ph, _, res = run
    pred = [b.to_json() for b in res.boxes]
    matches, _, _ = match_boxes(pred, ph.lesions, iou)
    return [(pred[i]["subtype"], ph.lesions[j]["subtype"]) for i, j, _ in matches]


def test_cascade_box_finds_a_bleed_with_its_subtype(run):
    matches = _cascade_matches(run, 0.25)
    assert matches and all(p == t for p, t in matches)


def test_cascade_runs_bridge_short_dips():
    """A run split by a dip of at most `gap` slices is one interval; a longer dip still splits."""
    from ICHLocalizationLib.methods.cascade3d import runs

    m = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    assert runs(m) == [(0, 0), (2, 3), (6, 6)]
    assert runs(m, gap=1) == [(0, 3), (6, 6)]
    assert runs(m, gap=2) == [(0, 6)]
    assert runs(np.zeros(5, bool), gap=2) == []


def test_cascade_thresholds_per_plane_and_subtype(run):
    """A weakly calibrated SAH classifier (fused p 0.3 over the bleed) gives a box only when its own
    threshold in all three planes lets it through; the other subtypes keep theirs."""
    from ICHLocalizationLib.methods.cascade3d import PLANES

    cascade = run[1].instances["cascade"]
    size = {"axial": 40, "coronal": 128, "sagittal": 128}
    probs = {p: np.zeros((n, 6)) for p, n in size.items()}
    probs["axial"][10:15, 3] = probs["coronal"][50:61, 3] = probs["sagittal"][40:51, 3] = 0.3
    grid = np.zeros((40, 128, 128), np.float32)
    assert cascade.grid_boxes(probs, grid, 0.5) == []
    lowered = {p: [0.5, 0.5, 0.25, 0.5, 0.5] for p in PLANES}
    (box,) = cascade.grid_boxes(probs, grid, lowered)
    assert box[:4] == ("SAH", (10, 14), (50, 60), (40, 50))
    assert cascade.grid_boxes(probs, grid, {**lowered, "sagittal": [0.5] * 5}) == []


def test_cascade_boxes_from_perfect_slice_labels_enclose_each_bleed(run):
    """The box stage alone: with each plane's true slice labels as its probabilities, the interval
    products, mapped back through the alignment of the tilted head, match every lesion at IoU 0.4
    with its subtype. (On the validation phantoms the box stage alone loses 7 of 43: README.)"""
    from ICHLocalizationLib.methods.cascade3d import PLANES
    from ICHLocalizationLib.preprocessing import PreparedScan, cascade_grid
    from ICHTrainingLib.datasets.phantom import subtype_map
    from ICHTrainingLib.metrics import match_boxes
    from ICHTrainingLib.families.cascade import plane_labels

    ph, pipe, _ = run
    scan = PreparedScan(ph.volume)
    grid, m = scan.cascade_grid()
    labels, _ = cascade_grid(ph.volume, scan.alignment, array=subtype_map(ph.mask, ph.lesions), linear=False)
    probs = {plane: plane_labels(labels, plane).astype(float) for plane in PLANES}  # what the nets learn from
    boxes = pipe.instances["cascade"].boxes(probs, grid, m, scan.alignment, threshold=0.5, gap=0)
    pred = [b.to_json() for b in boxes]
    matches, _, missed = match_boxes(pred, ph.lesions, 0.4)
    assert not missed and len(pred) == len(ph.lesions), [(p["subtype"], p["bbox_ras"]) for p in pred]
    assert all(pred[i]["subtype"] == ph.lesions[j]["subtype"] for i, j, _ in matches)
    assert min(v for _, _, v in matches) > 0.5, matches


@pytest.mark.xfail(strict=True, reason="the phantom cascade finds too few bleeds: check Se 0.50 / PPV 0.78 at IoU "
                                       "0.4, no SAH box at all; a better model must make this pass and drop the xfail")
def test_cascade_boxes_match_every_bleed(run):
    assert len(_cascade_matches(run, 0.4)) == len(run[0].lesions)


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
