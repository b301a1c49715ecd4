"""Ctrl-C before training starts: status 130 and one line, never a traceback; the message
of a second Ctrl-C only after a first one during training."""

import os
import signal

import pytest

import gentool.commands as commands
import gentool.training.loop as loop
from gentool.cli import main
from gentool.interrupts import STARTUP_INTERRUPTED

TRAIN = ["train", "maf", "--data", "digits", "--hidden-features", "8", "--num-layers", "1"]


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "where",
    ["data", "model", "loaders"],
)
def test_ctrl_c_during_start_up_is_one_line(tmp_path, monkeypatch, capsys, where):
    out = tmp_path / "run"
    if where == "data":  # while the data loads
        monkeypatch.setattr(commands, "_resolve_data", _interrupt)
    elif where == "model":  # while the networks are built
        monkeypatch.setattr(commands, "seed_everything", _interrupt)
    else:  # inside the engine, before its own Ctrl-C handler
        monkeypatch.setattr(loop, "make_loaders", _interrupt)
    assert main([*TRAIN, "-q", "--out", str(out)]) == 130
    captured = capsys.readouterr()
    lines = captured.err.splitlines()  # the engine's case after the line saying what trains
    assert lines[-1] == STARTUP_INTERRUPTED and captured.out == ""
    assert len(lines) == (2 if where == "loaders" else 1), captured.err
    assert not (out / "model.safetensors").exists() and not (out / "resume.safetensors").exists()


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="needs Python's own SIGINT handler",
)
def test_an_import_cut_short_by_ctrl_c_is_still_an_interrupt(tmp_path, monkeypatch, capsys):
    """A Ctrl-C inside an import can surface as another error (torch's import machinery)."""

    def import_torch_partly(*args, **kwargs):
        cut = False
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)  # let the handler run
        except KeyboardInterrupt:
            cut = True
        assert cut, "the Ctrl-C never arrived"
        # Raised apart from the KeyboardInterrupt, as by a C extension's failed import.
        raise ImportError("cannot import name '_C' from partially initialized module")

    monkeypatch.setattr(commands, "_resolve_data", import_torch_partly)
    assert main([*TRAIN, "-q", "--out", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err == STARTUP_INTERRUPTED + "\n"


def test_other_commands_interrupted_say_nothing_more(tmp_path, monkeypatch, capsys):
    import gentool.loading as loading

    monkeypatch.setattr(commands, "load_model", _interrupt)
    assert loading.load_model is not _interrupt
    out = str(tmp_path / "s.png")
    assert main(["sample", "maf", "-c", str(tmp_path), "--out", out]) == 130
    assert STARTUP_INTERRUPTED not in capsys.readouterr().err


def test_a_second_ctrl_c_during_training_says_so(tmp_path, monkeypatch, capsys):
    from gentool_flows.models import MAFModel

    step = MAFModel.train_step
    calls = []

    def impatient(self, batch):
        calls.append(1)
        if len(calls) == 3:  # two Ctrl-C in a row, during training
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch)

    monkeypatch.setattr(MAFModel, "train_step", impatient)
    out = tmp_path / "run"
    assert main([*TRAIN, "-q", "--batch-size", "64", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "aborted by a second Ctrl-C" in err and STARTUP_INTERRUPTED not in err
    assert "Traceback" not in err
