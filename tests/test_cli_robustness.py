"""The train command at the edges: run folders that cannot be written, stops by a signal,
GENTOOL_DEBUG's values."""

import json
import signal

import pytest

import gentool.commands as commands
from gentool.cli import main
from gentool.engine import FitResult

TRAIN = ["train", "maf", "--data", "digits", "--hidden-features", "8", "--num-layers", "1", "-q"]


def _one_error_line(capsys, message: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("my notes")
    assert main([*TRAIN, "--out", str(tmp_path / "taken")]) == 2
    _one_error_line(capsys, "taken is a file; choose a folder")
    assert main([*TRAIN, "--out", str(tmp_path / "taken" / "run")]) == 2
    _one_error_line(capsys, "cannot be made: ")
    assert (tmp_path / "taken").read_text() == "my notes"


def test_out_read_only(tmp_path, capsys, monkeypatch):
    # Tests may run as root, for whom permission bits do not count: ask os.access instead.
    monkeypatch.setattr(commands.os, "access", lambda path, mode: False)
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, "cannot be written")
    assert not (tmp_path / "run").exists()


def test_a_write_failing_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"

    def fit(spec, model, source, run):
        raise OSError(28, "No space left on device", str(out / "resume.safetensors"))

    monkeypatch.setattr(commands, "fit", fit)
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err  # after the line that says what trains where
    assert err.splitlines()[-1].endswith("resume.safetensors: No space left on device")
    assert "Traceback" not in err


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_run_stopped_by_a_signal_exits_with_its_status(
    tmp_path, capsys, monkeypatch, signum, status
):
    """Saved and resumable, but not finished: `gentool train ... && gentool score ...` stops."""
    out = tmp_path / "run"

    def fit(spec, model, source, run):
        return FitResult(0, 5, "interrupted", None, out / "model.safetensors", [], signum)

    monkeypatch.setattr(commands, "fit", fit)
    assert main([*TRAIN, "--out", str(out)]) == status
    captured = capsys.readouterr()
    assert json.loads(captured.out)["stopped"] == "interrupted"
    assert f"continue with --resume --out {out}" in captured.err
    assert ("SIGTERM" in captured.err) == (signum == signal.SIGTERM)


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_gentool_debug_off_values(value, capsys, monkeypatch):
    monkeypatch.setenv("GENTOOL_DEBUG", value)
    assert main(["train", "maf", "--data", "/no/such/folder"]) == 2
    _one_error_line(capsys, "/no/such/folder")


def test_gentool_debug_on(monkeypatch):
    monkeypatch.setenv("GENTOOL_DEBUG", "1")
    with pytest.raises(Exception, match="/no/such/folder"):
        main(["train", "maf", "--data", "/no/such/folder"])
