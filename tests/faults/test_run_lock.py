"""One writer per run folder: a second run, a --resume or an --overwrite while a run is
alive is refused in one line naming the holder; a stale lock is taken over, said once;
the lock goes however the run ends; temporary files of checkpoint writes cut short go when
a run starts or resumes."""

import json
import os
import socket
import subprocess
import sys

import pytest

import gentool.commands as commands
from gentool.cli import main
from gentool.training.lock import LOCK_FILE, RunLock

TRAIN = [
    "train",
    "maf",
    "--data",
    "digits",
    "--hidden-features",
    "8",
    "--num-layers",
    "1",
    "--batch-size",
    "64",
    "-q",
]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def run(tmp_path):
    """A run folder holding a finished two-epoch run."""
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--out", str(out)]) == 0
    assert not (out / LOCK_FILE).exists()  # released at the end
    return out


@pytest.mark.parametrize("how", ["fresh", "--overwrite", "--resume"])
def test_a_second_writer_is_refused_before_touching_anything(run, capsys, how):
    # "fresh": a run that has just started elsewhere and written no checkpoint yet.
    out = run.parent / "starting" if how == "fresh" else run
    extra = {"fresh": [], "--overwrite": ["--overwrite"], "--resume": ["--resume", "--epochs", "4"]}
    capsys.readouterr()
    with RunLock(out):  # the other run, alive (this process, another open file)
        holder = json.loads((out / LOCK_FILE).read_text())
        before = _files(out)
        assert main([*TRAIN, "--out", str(out), *extra[how]]) == 2
        assert _files(out) == before
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert f"{out} is in use by another gentool run" in err
    assert f"pid {holder['pid']} on {holder['host']}, started {holder['started']}" in err


def test_a_stale_lock_is_taken_over_said_once(run, capsys):
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2026-12-01 10:00:00"}
    (run / LOCK_FILE).write_text(json.dumps(stale))
    capsys.readouterr()
    assert main([*TRAIN, "--resume", "--epochs", "3", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.count("no longer running") == 1
    assert f"pid {stale['pid']} on {stale['host']}, started 2026-12-01 10:00:00" in err
    assert not (run / LOCK_FILE).exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2, 3]


def test_a_lock_of_another_host_is_refused_with_what_to_do(run, capsys):
    other = {"pid": 1, "host": "elsewhere.example", "started": "2026-12-01 10:00:00"}
    (run / LOCK_FILE).write_text(json.dumps(other))
    capsys.readouterr()
    assert main([*TRAIN, "--resume", "--epochs", "3", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pid 1 on elsewhere.example" in err
    assert f"remove {run / LOCK_FILE}" in err
    assert json.loads((run / LOCK_FILE).read_text()) == other  # not ours to remove


def test_the_lock_goes_however_the_run_ends(tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    # A start that fails: the folder it made for the lock goes again.
    assert main([*TRAIN[:3], "/no/such/folder", *TRAIN[4:], "--out", str(out)]) == 2
    assert not (tmp_path / "new").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # Ctrl-C before training
        patch.setattr(commands, "_resolve_data", interrupted)
        assert main([*TRAIN, "--out", str(out)]) == 130
    assert not (tmp_path / "new").exists()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="a bug"):
        patch.setattr(commands, "fit", broken)
        main([*TRAIN, "--out", str(out)])
    assert not (out / LOCK_FILE).exists()


def test_unfinished_checkpoint_writes_go_when_a_run_resumes(run, capsys):
    stale = [run / ".model.safetensors.k2j4x9.tmp", run / ".resume.safetensors.a8b7c6.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    kept = run / ".notes.tmp"
    kept.write_text("mine")
    capsys.readouterr()
    assert main([*TRAIN, "--resume", "--epochs", "3", "--out", str(run)]) == 0
    assert not any(path.exists() for path in stale) and kept.read_text() == "mine"
    err = capsys.readouterr().err
    assert "removed 2 temporary file(s) of checkpoint writes cut short" in err


def test_unfinished_checkpoint_writes_go_with_overwrite(run):
    stale = run / ".resume.safetensors.zz11yy.tmp"
    stale.write_bytes(b"\0")
    assert main([*TRAIN, "--overwrite", "--epochs", "1", "--out", str(run)]) == 0
    assert not stale.exists()


_KILLED_WHILE_WRITING = """
import os, sys
import gentool.checkpoint as checkpoint
from gentool.cli import main

def fsync(fd):  # kill -9 while the first checkpoint is being written
    os.kill(os.getpid(), 9)

checkpoint.os.fsync = fsync
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_then_a_new_run(tmp_path):
    out = tmp_path / "run"
    args = [*TRAIN, "--epochs", "2", "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_WRITING, *args], timeout=300)
    assert killed.returncode == -9
    assert list(out.glob(".*.safetensors.*.tmp")) and (out / LOCK_FILE).exists()
    done = subprocess.run(
        [sys.executable, "-m", "gentool", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "no longer running; taking the run folder over" in done.stderr
    assert "of checkpoint writes cut short" in done.stderr
    assert not list(out.glob(".*.tmp")) and not (out / LOCK_FILE).exists()


@pytest.mark.slow
def test_two_runs_started_together(tmp_path):
    out = tmp_path / "dup"
    args = [sys.executable, "-m", "gentool", *TRAIN, "--epochs", "200", "--out", str(out)]
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    runs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(r.wait(timeout=600), *r.communicate()) for r in runs]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert "is in use by another gentool run (pid " in refused
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)  # one run's log, not two interleaved
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == list(range(1, 201))
    assert os.listdir(out).count(LOCK_FILE) == 0


@pytest.mark.slow
def test_under_torchrun_every_rank_stops_at_a_held_lock(run):
    """Rank 0 alone takes the lock; the other ranks stop with it, rather than wait."""
    import socket as sockets

    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    args = [*torchrun, "--master_port", port, "-m", "gentool", *TRAIN, "--device", "cpu"]
    with RunLock(run):
        done = subprocess.run(
            [*args, "--resume", "--epochs", "4", "--out", str(run)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode != 0
    assert done.stderr.count(f"{run} is in use by another gentool run") == 1
    assert "the run folder is another run's (see rank 0)" in done.stderr
