"""``maf --features BACKBONE``: a flow on an image's pooled CNN features (a seeded random
backbone: no download)."""

from __future__ import annotations

import json

import pytest
import torch

from gentool.api import UserError, load_model
from gentool.cli import main

FEATURES = [
    "--features", "resnet18", "--backbone-weights", "none", "--feature-stages", "layer1,layer2",
    "--image-size", "64", "--channels", "3", "--hidden-features", "64", "--num-layers", "2",
    "--quiet", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "maf-features"
    assert (
        main(["train", "maf", "--data", "defects", "--epochs", "15", "--out", str(out), *FEATURES])
        == 0
    )
    return out


def test_a_feature_flow_finds_the_defects(run, capsys):
    capsys.readouterr()
    assert main(["score", "maf", "-c", str(run), "--data", "defects", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["anomaly_score"] == "nll" and summary["auroc"] > 0.75


def test_the_checkpoint_names_its_backbone_and_reloads_to_the_same_nll(run):
    first, second = (load_model("maf", run, "cpu") for _ in range(2))
    config = first.checkpoint_meta.config
    assert (config["features"], config["feature_stages"]) == ("resnet18", ["layer1", "layer2"])
    assert len(config["backbone_sha256"]) == 64
    images = torch.rand(3, 3, 64, 64)
    assert torch.equal(first.score_batch(images)["nll"], second.score_batch(images)["nll"])


def test_the_density_is_of_the_raw_features(run):
    """The standardiser's log-det is in the NLL: -log p(x) = -(log p_Z(z) + log |dz/dx|),
    z the standardised features, the batch norm's log-det its scales' logs."""
    model = load_model("maf", run, "cpu")
    images = torch.rand(4, 3, 64, 64)
    x = model.space.pooled(model.prepare(images))
    bn = model.networks["standardise"]
    scale = torch.exp(bn.log_gamma) * torch.rsqrt(bn.running_var + bn.eps)
    z = (x - bn.running_mean) * scale + bn.beta
    expected = -(model.flow.log_prob(z) + torch.log(scale).sum())
    assert torch.allclose(model.feature_nll(images), expected, atol=1e-4)


def test_a_feature_model_refuses_to_sample(run, capsys):
    capsys.readouterr()
    assert main(["sample", "maf", "-c", str(run), "-n", "2", "--out", str(run / "s.png")]) == 2
    assert "cannot draw them; train without --features to sample" in capsys.readouterr().err


def test_digits_are_too_small_for_a_backbone(tmp_path, capsys):
    args = ["train", "maf", "--data", "digits", "--features", "resnet18", "--backbone-weights"]
    assert main([*args, "none", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--features needs images of at least 32x32 pixels, not 8x8" in capsys.readouterr().err


def test_a_backbone_of_other_weights_is_refused(run, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from gentool.checkpoint import seal_metadata  # an edit on purpose

    with safe_open(str(run / "model.safetensors"), "pt") as handle:
        meta = handle.metadata()
    config = json.loads(meta["gentool.config"])
    config["backbone_sha256"] = "0" * 64
    meta["gentool.config"] = json.dumps(config)
    save_file(load_file(run / "model.safetensors"), tmp_path / "m.safetensors", seal_metadata(meta))
    with pytest.raises(UserError, match="differ"):
        load_model("maf", tmp_path / "m.safetensors", "cpu")
