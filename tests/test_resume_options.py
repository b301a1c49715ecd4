"""``train --resume`` through the CLI: the run's data options hold, typed ones must agree,
and a run that already has its epochs says so instead of training."""

import json
from dataclasses import asdict

import pytest

from gentool.checkpoint import (
    RESUME_FILE,
    CheckpointMeta,
    read_checkpoint,
    read_resume_header,
    save_resume,
)
from gentool.cli import main
from gentool.config import config_to_dict
from gentool.data.base import DataInfo, DataOptions
from gentool.family import DataKind
from gentool_translation.config import CycleGANConfig

TINY = ["--hidden-features", "16", "--num-layers", "1", "--quiet"]


@pytest.fixture(scope="module")
def threes(tmp_path_factory):
    """A one-class MAF run on the 3s of digits, one epoch (one step) long."""
    out = tmp_path_factory.mktemp("runs") / "maf3"
    args = ["train", "maf", "--data", "digits", "--normal-class", "3", "--epochs", "1"]
    assert main([*args, "--out", str(out), *TINY]) == 0
    return out


def _error(capsys, args):
    assert main(args) == 2, args
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (["--normal-class", "7"], "--normal-class cannot change when resuming (the run was "
         "trained with '3'); start a new run for that"),
        (["--channels", "3"], "--channels cannot change when resuming (the run was trained "
         "without it: images, 1x8x8)"),
        (["--image-size", "16"], "--image-size cannot change"),
        (["--data", "mnist"], "--data cannot change when resuming (the run was trained with "
         "'digits')"),
    ],
)  # fmt: skip
def test_a_changed_data_option_is_refused(threes, capsys, typed, message):
    before = (threes / RESUME_FILE).read_bytes()
    err = _error(capsys, ["train", "maf", "--resume", "--out", str(threes), *typed, "-q"])
    assert message in err
    assert (threes / RESUME_FILE).read_bytes() == before  # nothing trained


def test_data_options_left_out_or_repeated_keep_the_runs(threes, capsys):
    args = ["train", "maf", "--resume", "--out", str(threes), "--epochs", "2", "-q"]
    assert main([*args, "--normal-class", "3", "--data", "digits"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["epochs"], summary["stopped"]) == (2, "finished")
    assert main([*args[:-3], "--epochs", "3", "-q"]) == 0
    meta, _ = read_checkpoint(threes / "model.safetensors")
    assert DataInfo.from_json(meta.data).normal_class == "3"  # still the 3s
    assert json.loads(capsys.readouterr().out)["epochs"] == 3


def test_resuming_with_fewer_epochs_than_done_says_so(threes, capsys):
    done = int(read_resume_header(threes / RESUME_FILE)["meta"]["gentool.epoch"])
    records = (threes / "metrics.jsonl").read_text()
    # Without --quiet: no progress bar is drawn either.
    assert main(["train", "maf", "--resume", "--out", str(threes), "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["stopped"] == "finished"
    (line,) = captured.err.splitlines()
    assert line == (
        f"{threes} already has {done} epochs (--epochs 1): nothing to train; "
        "pass a larger --epochs to train on"
    )
    assert (threes / "metrics.jsonl").read_text() == records


@pytest.fixture
def cyclegan_run(tmp_path):
    """The resume header of a CycleGAN run on toy-shapes with the default data options (what
    the checks read; the weights are never loaded when a check fails)."""
    info = DataInfo(DataKind.UNPAIRED, 3, 32, 32, source="toy-shapes")
    meta = CheckpointMeta("cyclegan", "translation", "0", config_to_dict(CycleGANConfig()), "")
    meta.data = info.to_json()
    request = {"data": "toy-shapes", "options": asdict(DataOptions())}
    save_resume(tmp_path / RESUME_FILE, {"meta": meta.to_strings(), "request": request})
    return tmp_path


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (["--no-flip"], "--no-flip cannot change when resuming (the run was trained with --flip)"),
        (["--load-size", "64"], "--load-size cannot change when resuming (the run was trained "
         "without it: unpaired, 3x32x32)"),
        (["--direction", "b2a"], "--direction cannot change when resuming (the run was trained "
         "with 'a2b')"),
        (["--direction", "AtoB", "--flip", "--image-size", "48"], "--image-size cannot change"),
    ],
)  # fmt: skip
def test_translation_data_options_are_checked(cyclegan_run, capsys, typed, message):
    err = _error(capsys, ["train", "cyclegan", "--resume", "--out", str(cyclegan_run), *typed])
    assert message in err


def test_a_config_file_counts_when_resuming(tmp_path, capsys):
    """``--resume --config FILE``: the file's schedule applies and its other values are
    checked like typed ones, instead of the whole file being ignored."""
    out = tmp_path / "maf3"
    start = ["train", "maf", "--data", "digits", "--normal-class", "3", "--epochs", "1"]
    assert main([*start, "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    before = (out / RESUME_FILE).read_bytes()
    other = tmp_path / "other.toml"
    other.write_text("num-layers = 2\nepochs = 2\n")
    resume = ["train", "maf", "--resume", "--out", str(out), "-q"]
    err = _error(capsys, [*resume, "--config", str(other)])
    assert "--num-layers cannot change when resuming (the model was built with 1)" in err
    assert (out / RESUME_FILE).read_bytes() == before  # nothing trained
    # The values the run started with, `auto` ones too, and a longer schedule.
    same = tmp_path / "same.toml"
    same.write_text("hidden-features = [16]\nnum-layers = 1\nlogit-lambda = -1\nepochs = 2\n")
    assert main([*resume, "--config", str(same)]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2


def test_a_resume_state_with_unknown_data_options_is_damaged(cyclegan_run, capsys):
    header = read_resume_header(cyclegan_run / RESUME_FILE)
    header["request"]["options"]["evil"] = 1
    save_resume(cyclegan_run / RESUME_FILE, header)
    err = _error(capsys, ["train", "cyclegan", "--resume", "--out", str(cyclegan_run)])
    assert "damaged resume state (ValueError: unknown data options ['evil'])" in err
