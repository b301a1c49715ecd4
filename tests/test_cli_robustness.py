"""The train command at the edges: run folders that cannot be written, stops by a signal,
GENTOOL_DEBUG's values."""

import json
import signal

import pytest

import gentool.checks as checks
import gentool.commands as commands
from gentool.cli import main
from gentool.training import FitResult

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
    monkeypatch.setattr(checks.os, "access", lambda path, mode: False)
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


def test_gentool_debug_on(monkeypatch, capsys):
    """The traceback is shown, and the status stays a user error's."""
    monkeypatch.setenv("GENTOOL_DEBUG", "1")
    assert main(["train", "maf", "--data", "/no/such/folder"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "UserError" in err
    assert err.splitlines()[-1].startswith("error: ") and "/no/such/folder" in err


@pytest.mark.parametrize(
    ("error", "where", "amount"),
    [
        (
            "OutOfMemoryError",
            "the GPU",
            "2.00 GiB",  # torch's CUDA message, in its own exception type
        ),
        ("RuntimeError", "the host", "23.84 GiB"),  # the CPU allocator's, in bytes
    ],
)
def test_out_of_memory_is_one_line_and_keeps_the_run(error, where, amount, tmp_path, capsys):
    """A GPU too small for the batch or image size: the flags to change, not a traceback;
    the run folder keeps its checkpoint."""
    import torch

    out = tmp_path / "run"
    assert main([*TRAIN, "--max-steps", "1", "--out", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()
    text = {
        "OutOfMemoryError": "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
        "capacity of 3.94 GiB of which 1.2 GiB is free.",
        "RuntimeError": "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
        "can't allocate memory: you tried to allocate 25600000000 bytes. Error code 12",
    }[error]

    def step(*args, **kwargs):
        raise (torch.OutOfMemoryError if error == "OutOfMemoryError" else RuntimeError)(text)

    from gentool_flows.models import MAFModel

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MAFModel, "train_step", step)
        capsys.readouterr()
        args = [*TRAIN, "--resume", "--epochs", "400", "--out", str(out)]
        assert main(args) == 1
        err = capsys.readouterr().err  # after the run's header line, one error line
        assert err.startswith("training maf on digits") and "Traceback" not in err
        assert err.splitlines()[1:] == [
            f"error: out of memory on {where} (one allocation of {amount}): lower --batch-size, "
            "--image-size or the network's size (`gentool bench FAMILY` reports peak memory); "
            "checkpoints already written are kept"
        ]
        assert (out / "model.safetensors").read_bytes() == before
        with pytest.raises(RuntimeError):  # --debug shows the traceback
            main(["--debug", *args])


def test_other_runtime_errors_still_show_their_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(commands, "train", broken)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        main([*TRAIN, "--out", "unused"])
