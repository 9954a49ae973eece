"""Networks' shapes, the model catalogue, checksums and safe loading."""
import copy

import pytest
import torch

from ICHLocalizationLib.models import Catalogue, ModelEntry, ModelError, choose_device, file_sha256, load_state
from ICHLocalizationLib.networks import MILNet, SliceClassifier, build_unet, prepare_for_inference
from ICHLocalizationLib.networks.classifier import ClassifierBank


@pytest.mark.parametrize("variant", ["maxpool", "attention"])
def test_mil_outputs_slice_probability_and_map(variant):
    net = MILNet(variant).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        logit, m = net(x)
        prob, lmap = net.likelihood(x)
    assert logit.shape == (2,) and m.shape == (2, 32, 32), "paper 001: the map is 1/4 of the input"
    assert lmap.shape == (2, 128, 128) and 0 <= float(lmap.min()) and float(lmap.max()) <= 1
    if variant == "attention":
        assert torch.allclose(m.flatten(1).sum(1), torch.ones(2), atol=1e-5), "attention weights sum to one"
    else:
        assert torch.allclose(torch.sigmoid(logit), torch.sigmoid(m.flatten(1).amax(1))), "max-pool of the map"
    n_params = sum(p.numel() for p in net.parameters())
    assert 80_000 < n_params < 200_000


def test_classifier_and_unet_shapes():
    c = SliceClassifier().eval()
    assert c(torch.rand(3, 3, 40, 128)).shape == (3,)
    u = build_unet().eval()
    assert u(torch.rand(1, 3, 128, 128)).shape == (1, 6, 128, 128)


def _with_trained_batch_norm(net):
    """Non-trivial running statistics and affine terms, as after training."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5); m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("make, call", [
    (lambda: MILNet("maxpool"), lambda n, x: n.likelihood(x)[1]),
    (lambda: MILNet("attention"), lambda n, x: n.likelihood(x)[0]),
    (lambda: ClassifierBank(["ich", "SDH"]), lambda n, x: n(x)["SDH"]),
    (lambda: build_unet(), lambda n, x: n(x)),
])
def test_inference_preparation_folds_batch_norm_without_changing_outputs(make, call):
    net = _with_trained_batch_norm(make())
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        before = call(net, x)
        fast = prepare_for_inference(copy.deepcopy(net))
        after = call(fast, x)
    count = lambda kind: sum(isinstance(m, kind) for m in fast.modules())
    # torch.fx folds batch norm after Conv2d only; the U-Net's transposed convolutions keep theirs
    assert count(torch.nn.BatchNorm2d) <= count(torch.nn.ConvTranspose2d), "every conv's batch norm folded"
    assert torch.allclose(before, after, atol=1e-5)


def _catalogue(tmp_path, method="mil", state=None):
    state = state if state is not None else MILNet().state_dict()
    torch.save(state, tmp_path / "w.pt")
    entry = ModelEntry(id="m1", method=method, version="1", files={"weights": {"file": "w.pt", "sha256": file_sha256(tmp_path / "w.pt")}},
                       input={"variant": "maxpool"}, default=True, directory=tmp_path)
    cat = Catalogue([entry], tmp_path)
    cat.save()
    return Catalogue.load(tmp_path)


def test_catalogue_round_trip_and_loading(tmp_path):
    cat = _catalogue(tmp_path)
    entry = cat.get("mil")
    state = load_state(entry)
    MILNet().load_state_dict(state)
    with pytest.raises(ModelError, match="not a cascade model"):
        cat.get("cascade", "m1")
    with pytest.raises(ModelError, match="no unet model"):
        cat.get("unet")
    with pytest.raises(ModelError, match="unknown method"):
        cat.get("yolo")


def test_checksum_mismatch_is_refused(tmp_path):
    cat = _catalogue(tmp_path)
    with open(tmp_path / "w.pt", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ModelError, match="checksum"):
        load_state(cat.get("mil"))


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickled_code_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"weights": torch.zeros(2), "evil": _Payload()}, tmp_path / "evil.pt")
    entry = ModelEntry(id="evil", method="mil", version="1",
                       files={"weights": {"file": "evil.pt", "sha256": file_sha256(tmp_path / "evil.pt")}}, directory=tmp_path)
    with pytest.raises(ModelError, match="refused"):
        load_state(entry)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_missing_catalogue_and_device_choice(tmp_path):
    with pytest.raises(ModelError, match="no model catalogue"):
        Catalogue.load(tmp_path / "nowhere")
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            choose_device("cuda")
    with pytest.raises(ModelError, match="unknown device"):
        choose_device("tpu")


def test_bundled_catalogue_is_complete():
    """Every bundled model: weights present with the listed sha256, training command, data, metrics."""
    cat = Catalogue.load()
    methods = {e.method for e in cat.entries}
    assert methods == {"cascade", "mil", "unet"}
    for e in cat.entries:
        for spec in e.files.values():
            assert file_sha256(cat.directory / spec["file"]) == spec["sha256"]
        assert e.training.get("command", "").startswith("ich-train"), e.id
        assert e.training.get("data") and e.metrics, e.id
        assert (cat.directory / spec["file"]).stat().st_size < 8 * 2 ** 20, "bundled weights stay small"
    assert cat.get("mil").input.get("variant") == "maxpool", "max-pool is the default MIL variant (paper: better Dice)"
    assert "detector" in cat.get("mil").params
