"""Faults that once ended in a traceback or stopped a run: bad values of flags and of
GENTOOL_HOME, --debug's status, and a stderr nobody reads any more."""

import io
import json
import os
import subprocess
import sys

import pytest

from gentool.cli import main

TINY = ["--hidden-features", "8", "--num-layers", "1", "--batch-size", "64"]


def _one_error_line(capsys, message: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bench_threads_zero_is_one_line(capsys):
    assert main(["bench", "maf", "--threads", "0"]) == 2
    _one_error_line(capsys, "--threads must be at least 1, not 0")


@pytest.mark.parametrize("below", [False, True])
def test_gentool_home_a_file_is_one_line(tmp_path, monkeypatch, capsys, below):
    home = tmp_path / "somefile"
    home.write_text("not a folder")
    monkeypatch.setenv("GENTOOL_HOME", str(home / "cache" if below else home))
    args = ["train", "maf", "--data", "mnist", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    _one_error_line(capsys, "is a file; point GENTOOL_HOME at a folder")
    assert home.read_text() == "not a folder" and not (tmp_path / "run").exists()


def test_debug_keeps_the_status_of_a_usage_error(capsys):
    assert main(["--debug", "train", "maf", "--data", "digits", "--epochs", "many"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: ")


class _ClosedPipe(io.TextIOBase):
    """A stderr whose reader has gone (``2>&1 | head -1``): every write is EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


def test_a_closed_stderr_never_stops_a_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "stderr", _ClosedPipe())
    args = ["train", "maf", "--data", "digits", *TINY, "--epochs", "2", "--out", str(out)]
    assert main(args) == 0  # progress bars, epoch lines and notes all went nowhere
    summary = json.loads(capsys.readouterr().out)
    assert (summary["epochs"], summary["stopped"]) == (2, "finished")
    assert (out / "model.safetensors").is_file() and (out / "resume.safetensors").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 2


@pytest.mark.slow
def test_a_closed_stderr_pipe_in_a_real_process(tmp_path):
    """stderr the write end of a pipe whose read end is closed, as after ``| head -1``."""
    out = tmp_path / "run"
    read, write = os.pipe()
    os.close(read)
    args = ["train", "maf", "--data", "digits", *TINY, "--epochs", "2", "--out", str(out)]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gentool", *args],
            stdout=subprocess.PIPE,
            stderr=write,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "80"},
        )
    finally:
        os.close(write)
    assert done.returncode == 0
    assert json.loads(done.stdout)["stopped"] == "finished"
    assert (out / "model.safetensors").is_file() and (out / "resume.safetensors").is_file()
