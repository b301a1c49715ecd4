"""What a user hands a flow: images of another shape or scale, bad options, odd scores."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gentool.api import DataInfo, DataKind, UserError, resize_image, to_channels
from gentool.cli import main
from gentool.metrics import anomaly_metrics
from gentool.scoring import ScoreResult, score_source, write_results
from gentool_flows.config import IAFConfig, MADEConfig, MAFConfig
from gentool_flows.models import IAFModel, MADEModel, MAFModel

GREY_4X6 = DataInfo(DataKind.IMAGES, 1, 4, 6, levels=17)
MODELS = {
    "made": lambda info: MADEModel(MADEConfig(hidden_features=(16,)), info, "cpu"),
    "maf": lambda info: MAFModel(MAFConfig(hidden_features=(16,), num_layers=2), info, "cpu"),
    "iaf": lambda info: IAFModel(IAFConfig(hidden_features=(16,), num_layers=2), info, "cpu"),
}


def trained_like(name: str, info: DataInfo = GREY_4X6):
    """A model whose flow is far from the identity, so that wrong inputs change the NLL."""
    torch.manual_seed(0)
    model = MODELS[name](info)
    with torch.no_grad():
        for parameter in model.flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model.eval()


def scores(model, images: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)  # the same dequantisation noise for every call
    return model.score_batch(images)["nll"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_batch_prepares_images_as_the_training_images_were(name):
    # Another size and channel count: converted and resized as `gentool score` does from
    # the checkpoint's data description, not a shape error from deep inside the flow.
    model = trained_like(name)
    photo = torch.rand(3, 3, 12, 18)
    prepared = resize_image(to_channels(photo, 1), (4, 6))
    expected = scores(model, prepared)
    assert torch.allclose(scores(model, photo), expected)
    one = scores(model, prepared[:1])  # the noise of a batch depends on its size
    assert torch.allclose(scores(model, photo[:1].double()), one)  # float64 in, as float32
    assert torch.equal(scores(model, prepared[0]), one)  # one image [C, H, W]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(2, 1, 4, 6) * 255, "floats in [0, 1], not in"),
        ((torch.rand(2, 1, 4, 6) * 255).to(torch.uint8), "not torch.uint8"),
        (torch.full((2, 1, 4, 6), math.nan), "not in [nan, nan]"),
        (torch.rand(2, 24), "[N, C, H, W]"),
    ],
)
def test_score_batch_refuses_images_it_cannot_read_rather_than_return_nan(images, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        trained_like("maf").score_batch(images)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_samples_lie_on_the_pixel_levels_of_the_data(name):
    # A sample is read back from dequantised space to the level whose cell holds it, so it
    # is an image of the data's 17 levels, pure black and white included.
    model = trained_like(name)
    torch.manual_seed(0)
    images = model.sample(64, temperature=2.0)
    levels = images * 16
    assert images.shape == (64, 1, 4, 6)
    assert torch.equal(levels, levels.round())
    assert images.min() == 0.0 and images.max() == 1.0


def test_quantize_inverts_dequantize():
    model = trained_like("maf")
    images = torch.randint(0, 17, (50, 1, 4, 6)) / 16.0
    y = model.dequantize(images)
    assert torch.equal(model.quantize(y).reshape(images.shape), images)


@pytest.mark.parametrize("lam", ["0", "0.5", "0.7", "nan"])
def test_a_logit_lambda_outside_its_range_is_one_line(lam, tmp_path, capsys):
    args = ["train", "maf", "--data", "digits", "--logit-lambda", lam, "--max-steps", "1"]
    assert main([*args, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    if lam == "nan":  # refused for every float hyperparameter by gentool.config
        assert err == "error: --logit-lambda: 'nan' is not a finite number\n"
    else:
        assert err == f"error: --logit-lambda must be -1 (auto) or between 0 and 0.5, not {lam}\n"


@pytest.mark.parametrize("std", [math.nan, math.inf])
def test_smoothing_must_be_a_number(std):
    with pytest.raises(UserError, match="--smoothing must be -1"):
        MAFModel(MAFConfig(smoothing=std), GREY_4X6, "cpu")


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf])
def test_a_temperature_that_is_not_a_positive_number_is_refused(temperature):
    # NaN passed `temperature <= 0` and gave black images with exit status 0.
    with pytest.raises(UserError, match="--temperature must be a positive number"):
        trained_like("iaf").sample(2, temperature)


def test_a_checkpoint_without_pixel_levels_is_a_user_error():
    with pytest.raises(UserError, match="0 pixel levels"):
        MAFModel(MAFConfig(), DataInfo(DataKind.IMAGES, 1, 2, 2, levels=0), "cpu")


def test_infinite_scores_still_give_valid_json(capsys):
    # An IAF reports an NLL beyond float range as inf; the JSON must stay JSON.
    summary = {"mean_nll": math.inf, "teacher_gap_nats": -math.inf, "x": [math.nan, 1.0]}
    write_results(ScoreResult(summary), as_json=True, csv=None)

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    parsed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert parsed == {"mean_nll": "inf", "teacher_gap_nats": "-inf", "x": ["nan", 1.0]}


def test_metrics_when_no_score_is_finite():
    metrics = anomaly_metrics(torch.full((4,), math.inf), torch.tensor([0, 1, 0, 1]))
    assert metrics["auroc"] == 0.5 and metrics["normal"] == 2


def test_a_batch_size_below_one_is_a_user_error():
    with pytest.raises(UserError, match="--batch-size must be at least 1"):
        score_source(trained_like("maf"), [], None, 0, torch.device("cpu"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "maf"
    args = ["train", "maf", "--data", "digits", "--max-steps", "1", "--hidden-features", "8"]
    assert main([*args, "--num-layers", "1", "--out", str(out), "--quiet"]) == 0
    return out


def test_api_load_model_takes_the_cli_device_names(tiny_run):
    from gentool import api

    model = api.load_model("maf", tiny_run)  # "auto": the CPU on a machine without a GPU
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="not a device"):
        api.load_model("maf", tiny_run, "gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available here"):
            api.load_model("maf", tiny_run, "cuda")


@pytest.mark.parametrize(
    ("command", "seed"),
    [("train", "35184372088832"), ("sample", "99999999999999999999"), ("score", "-1099511627776")],
)
def test_a_seed_torch_cannot_take_is_one_line(tiny_run, tmp_path, capsys, command, seed):
    """A seed past 64 bits (or one that the per-epoch seeds push past it) was a traceback,
    after ``--overwrite`` had already cleared the run folder."""
    out = tmp_path / "run"
    args = {
        "train": ["train", "maf", "--data", "digits", "--out", str(out), "--overwrite", "-q"],
        "sample": ["sample", "maf", "-c", str(tiny_run), "--out", str(tmp_path / "s.png")],
        "score": ["score", "maf", "-c", str(tiny_run), "--data", "digits"],
    }[command]
    out.mkdir()
    (out / "metrics.jsonl").write_text("mine\n")
    assert main([*args, "--seed", seed]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --seed must lie between -4294967295 and 4294967295, not {seed}\n"
    assert (out / "metrics.jsonl").read_text() == "mine\n"


def test_resume_and_overwrite_together_are_refused(tiny_run, capsys):
    before = (tiny_run / "model.safetensors").read_bytes()
    args = ["train", "maf", "--resume", "--overwrite", "--out", str(tiny_run), "-q"]
    assert main(args) == 2
    assert "give one" in capsys.readouterr().err
    assert (tiny_run / "model.safetensors").read_bytes() == before


def test_overwrite_never_clears_the_teacher_it_reads(tiny_run, tmp_path, capsys):
    """``train iaf --teacher RUN --out RUN --overwrite`` would delete the teacher's weights."""
    import shutil

    teacher = tmp_path / "maf"
    shutil.copytree(tiny_run, teacher)
    before = (teacher / "model.safetensors").read_bytes()
    for out in (teacher, tmp_path):  # the teacher's own folder, or one above it
        args = ["train", "iaf", "--data", "digits", "--teacher", str(teacher), "--out", str(out)]
        (out / "model.safetensors").touch()  # a run there to overwrite
        if out != teacher:
            (out / "model.safetensors").write_text("an earlier run")
        assert main([*args, "--overwrite", "--max-steps", "1", "-q"]) == 2
        err = capsys.readouterr().err
        assert f"--teacher {teacher} lies in --out {out}, which --overwrite would clear" in err
    assert (teacher / "model.safetensors").read_bytes() == before
    assert (tmp_path / "model.safetensors").read_text() == "an earlier run"


def test_a_one_class_model_scores_a_folder_without_classes(tmp_path, capsys):
    """The checkpoint's normal class has nothing to label in a flat folder: its images are
    scored, as ``--images`` scores them, instead of an error about a flag nobody typed."""
    from PIL import Image
    from sklearn.datasets import load_digits

    run = tmp_path / "maf3"
    args = ["train", "maf", "--data", "digits", "--normal-class", "3", "--max-steps", "1"]
    assert (
        main([*args, "--hidden-features", "8", "--num-layers", "1", "--out", str(run), "-q"]) == 0
    )
    folder = tmp_path / "flat"
    folder.mkdir()
    for i, image in enumerate(load_digits().images[:12]):
        Image.fromarray((image * 255 / 16).astype("uint8")).save(folder / f"{i}.png")
    capsys.readouterr()
    score = ["score", "maf", "-c", str(run), "--data", str(folder), "--split", "test", "--json"]
    assert main(score) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0 < summary["images"] < 12 and "auroc" not in summary
    assert main([*score, "--normal-class", "3"]) == 2  # typed, it is still an error
    assert "has no classes, so --normal-class cannot apply" in capsys.readouterr().err
