"""FastFlow: the 2D flow's maths, and anomaly maps that find defects on the built-in defect set
(a seeded random backbone: no download)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.autograd.functional import jacobian

from gentool.api import DataInfo, DataKind, DataOptions, UserError, load_model
from gentool.cli import main
from gentool_anomaly.flow2d import AffineCoupling2d, FastFlow2d

SMALL = [
    "--backbone-weights", "none", "--stages", "layer1,layer2", "--flow-steps", "4",
    "--hidden-ratio", "0.5", "--batch-size", "32", "--image-size", "64", "--quiet",
    "--device", "cpu",
]  # fmt: skip


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Every weight random: a fresh coupling is the identity, whose log-det is 0 anyway."""
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return module.double()


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_a_steps_log_det_is_the_brute_force_jacobians(kernel_size):
    step = _randomised(AffineCoupling2d(4, kernel_size, 1.0, 2.0, torch.tensor([2, 0, 3, 1])))
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    y, log_det = step(x)
    full = jacobian(lambda v: step(v.reshape(1, 4, 3, 3))[0].flatten(), x.flatten())
    _, brute = torch.linalg.slogdet(full)
    # The map's log-det sums over locations to the whole map's.
    assert log_det.sum().item() == pytest.approx(brute.item(), abs=1e-9)
    assert torch.allclose(step.inverse(y), x, atol=1e-10)


def test_the_flow_inverts_and_its_nll_is_exact():
    flow = _randomised(FastFlow2d(6, steps=3))
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    z, log_det = flow(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-9)
    # A location's NLL: -log N(z; 0, I) - log|det|, per channel.
    expected = (0.5 * z.pow(2).sum(1) - log_det) / 6 + 0.5 * torch.log(torch.tensor(2 * torch.pi))
    assert torch.allclose(flow.nll_map(x), expected.double())


def test_too_small_images_are_one_line():
    from gentool_anomaly.config import FastFlowConfig
    from gentool_anomaly.fastflow import FastFlowModel

    info = DataInfo(DataKind.IMAGES, 3, 8, 8, source="tiny")
    with pytest.raises(UserError, match="needs images of at least 32x32 pixels, not 8x8"):
        FastFlowModel(FastFlowConfig(backbone_weights="none"), info, torch.device("cpu"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """FastFlow trained on the defect set's normal images (a few epochs)."""
    out = tmp_path_factory.mktemp("runs") / "fastflow"
    args = ["train", "fastflow", "--data", "defects", "--epochs", "6", "--out", str(out)]
    assert main([*args, *SMALL]) == 0
    return out


def test_training_lowers_the_loss(trained):
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["type"] == "epoch"]
    assert losses[-1] < losses[0]


def test_scores_find_the_defects_and_the_maps_point_at_them(trained, tmp_path, capsys):
    grids = tmp_path / "maps"
    args = ["score", "fastflow", "-c", str(trained), "--data", "defects", "--json"]
    assert main([*args, "--maps", str(grids), "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["anomaly_score"] == "map_max"
    assert summary["auroc"] > 0.8 and summary["pixel_auroc"] > 0.8
    assert 0 < summary["aupro"] <= 1 and "f1_max" in summary and "threshold" in summary
    assert summary["maps"] == summary["images"] == len(list(grids.glob("*.png")))


def test_the_maps_maximum_falls_inside_the_defect(trained):
    from gentool.data.resolve import resolve_data
    from gentool.registry import get_registry

    model = load_model("fastflow", trained, "cpu")
    options = DataOptions.from_info(model.data)
    source = resolve_data("defects", DataKind.IMAGES, options, get_registry().datasets)
    test = source.split("test")
    inside = total = 0
    for image, _, mask in (test[i] for i in range(len(test))):
        if mask.sum() == 0:
            continue
        amap = model.score_batch(image[None])["anomaly_map"][0]
        peak = int(amap.flatten().argmax())
        inside += bool(mask.flatten()[peak] > 0)
        total += 1
    assert total > 10 and inside / total > 0.5


def test_a_reloaded_checkpoint_gives_the_same_map_bit_for_bit(trained):
    first = load_model("fastflow", trained, "cpu")
    second = load_model("fastflow", trained, "cpu")
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(
        first.score_batch(images)["anomaly_map"], second.score_batch(images)["anomaly_map"]
    )


def test_a_checkpoint_knows_its_backbone(trained, tmp_path):
    from safetensors import safe_open

    with safe_open(str(trained / "model.safetensors"), "pt") as handle:
        config = json.loads(handle.metadata()["gentool.config"])
    assert config["backbone"] == "resnet18" and len(config["backbone_sha256"]) == 64
    assert config["stages"] == ["layer1", "layer2"]


def test_maps_for_a_family_without_them_is_one_line(tmp_path, capsys):
    run = tmp_path / "maf"
    tiny = ["--hidden-features", "8", "--num-layers", "1", "--epochs", "1", "--quiet"]
    assert main(["train", "maf", "--data", "digits", "--out", str(run), *tiny]) == 0
    capsys.readouterr()
    args = ["score", "maf", "-c", str(run), "--data", "digits", "--maps", str(tmp_path / "m")]
    assert main(args) == 2
    assert "--maps: maf scores whole images and makes no anomaly maps; families that do: " in (
        capsys.readouterr().err
    )


def test_the_image_score_can_be_the_mean_nll(trained, tmp_path, capsys):
    """``--image-score mean`` ranks and thresholds images by their whole NLL."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from gentool.checkpoint import seal_metadata  # an edit on purpose

    with safe_open(str(trained / "model.safetensors"), "pt") as handle:
        meta = handle.metadata()
    config = json.loads(meta["gentool.config"])
    config["image_score"] = "mean"
    meta["gentool.config"] = json.dumps(config)
    save_file(
        load_file(trained / "model.safetensors"), tmp_path / "m.safetensors", seal_metadata(meta)
    )
    capsys.readouterr()
    args = ["score", "fastflow", "-c", str(tmp_path / "m.safetensors"), "--data", "defects"]
    assert main([*args, "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["anomaly_score"] == "nll" and summary["auroc"] > 0.8
