"""The training engine: logging, checkpoints, resume, Ctrl-C, the NaN guard, early stopping.

A small but real density model (a diagonal Gaussian in logit space) trains on scikit-learn
digits here, so these tests exercise the engine alone; the families have their own tests.
"""

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from gentool.checkpoint import load_resume, read_checkpoint, save_resume
from gentool.config import DensityConfig
from gentool.data.base import DataInfo, DataSource
from gentool.density import DensityModel
from gentool.errors import TrainingDiverged, UserError
from gentool.family import DataKind, FamilySpec
from gentool.training import RunOptions, Trainer, fit


class DiagonalGaussian(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.hidden = nn.Linear(features, features)  # gives Adam real state to save

    def log_prob(self, w):
        w = w + 0.0 * self.hidden(w).sum()
        dist = torch.distributions.Normal(self.loc, self.log_scale.exp())
        return dist.log_prob(w).sum(1)

    def sample(self, n, temperature=1.0):
        return self.loc + temperature * self.log_scale.exp() * torch.randn(n, self.loc.numel())


class GaussianModel(DensityModel):
    fail_at: int | None = None  # step at which the loss turns NaN
    interrupt_at: int | None = None  # step at which Ctrl-C arrives
    interrupt_signal = signal.SIGINT  # or SIGTERM, a scheduler's kill

    def build_flow(self, features):
        self.steps = 0
        return DiagonalGaussian(features)

    def train_step(self, batch):
        self.steps += 1
        if self.steps == self.interrupt_at:
            os.kill(os.getpid(), self.interrupt_signal)
        losses = super().train_step(batch)
        if self.fail_at is not None and self.steps >= self.fail_at:
            losses["loss"] = losses["loss"] * float("nan")
        return losses


@dataclass
class Config(DensityConfig):
    pass


SPEC = FamilySpec("gauss", "test density", Config, DataKind.IMAGES, {"train"}, GaussianModel)


class Digits(DataSource):
    def __init__(self):
        x, y = load_digits(return_X_y=True)
        images = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
        labels = torch.tensor(y)
        self.train = TensorDataset(images[:400], labels[:400])
        self.test = TensorDataset(images[400:500], labels[400:500])
        names = tuple(str(i) for i in range(10))
        self.info = DataInfo(
            DataKind.IMAGES, 1, 8, 8, levels=17, source="digits", class_names=names
        )

    def split(self, name):
        return {"train": self.train, "test": self.test}[name]


def _train(
    out,
    epochs=4,
    resume=False,
    max_steps=None,
    model_class=GaussianModel,
    precision="fp32",
    workers=0,
    **cfg,
):
    torch.manual_seed(0)
    config = Config(epochs=epochs, batch_size=50, **{"lr": 0.05, **cfg})
    model = model_class(config, Digits().info, torch.device("cpu"))
    run = RunOptions(
        out,
        resume=resume,
        max_steps=max_steps,
        progress=False,
        log_every=3,
        precision=precision,
        workers=workers,
    )
    return fit(SPEC, model, Digits(), run), model


def _records(out, kind=None):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if kind is None or r["type"] == kind]


def _assert_same_run(whole, resumed, whole_dir, resumed_dir):
    """Bit-identical weights and the same metrics.jsonl, byte for byte (the step and epoch
    records: losses, learning rates, validation)."""
    for key, value in whole.networks.state_dict().items():
        assert torch.equal(resumed.networks.state_dict()[key], value), key
    metrics = "metrics.jsonl"
    assert (resumed_dir / metrics).read_bytes() == (whole_dir / metrics).read_bytes()


def test_training_writes_a_complete_run(tmp_path):
    result, _ = _train(tmp_path, epochs=3)
    assert result.stopped == "finished" and result.epochs == 3
    epochs = _records(tmp_path, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    # Step records count epochs from 1 too: a step record belongs to the epoch record after it.
    steps = _records(tmp_path, "step")
    assert [r["step"] for r in steps] == [3, 6, 7, 10, 13, 14, 17, 20, 21]  # log_every 3
    assert [r["epoch"] for r in steps] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    for record in epochs:
        (last,) = [r for r in steps if r["step"] == record["step"]]
        assert last["epoch"] == record["epoch"] and last["loss"] == record["loss"]
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]  # it learns on real data
    for name in ("model.safetensors", "resume.safetensors", "losses.png"):
        assert (tmp_path / name).is_file()
    # Auto previews: epochs this short get the first grid and the last, not one each.
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["epoch_0001.png", "epoch_0003.png"]
    meta, _ = read_checkpoint(tmp_path / "model.safetensors")
    assert meta.metrics["val_loss"] == pytest.approx(result.best_validation)
    assert DataInfo.from_json(meta.data).levels == 17


def test_resume_equals_uninterrupted(tmp_path):
    _, whole = _train(tmp_path / "whole", epochs=4)
    _train(tmp_path / "split", epochs=2)
    _, resumed = _train(tmp_path / "split", epochs=4, resume=True)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "split")


@pytest.mark.parametrize("max_steps", [5, 1, 6])
def test_resume_mid_epoch_equals_uninterrupted(tmp_path, max_steps):
    _, whole = _train(tmp_path / "whole", epochs=2)
    result, _ = _train(tmp_path / "split", epochs=2, max_steps=max_steps)  # 7 steps per epoch
    assert result.stopped == "max-steps" and result.epochs == 0
    _, resumed = _train(tmp_path / "split", epochs=2, resume=True)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "split")


def test_ctrl_c_saves_and_resumes(tmp_path):
    class Interrupted(GaussianModel):
        interrupt_at = 9

    result, _ = _train(tmp_path / "run", epochs=3, model_class=Interrupted)
    assert result.stopped == "interrupted" and result.steps == 9
    assert (tmp_path / "run" / "resume.safetensors").is_file()
    _, resumed = _train(tmp_path / "run", epochs=3, resume=True)
    _, whole = _train(tmp_path / "whole", epochs=3)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "run")


def test_ctrl_c_at_an_epochs_last_step_resumes_exactly(tmp_path):
    class Interrupted(GaussianModel):
        interrupt_at = 7  # the last step of epoch 1: its end comes after the resume

    result, _ = _train(tmp_path / "run", epochs=2, model_class=Interrupted)
    assert (result.stopped, result.epochs, result.steps) == ("interrupted", 0, 7)
    _, resumed = _train(tmp_path / "run", epochs=2, resume=True)
    _, whole = _train(tmp_path / "whole", epochs=2)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "run")


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    class Diverging(GaussianModel):
        fail_at = 12  # epoch 2 (7 steps per epoch)

    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2"):
        _train(tmp_path, epochs=3, model_class=Diverging)
    meta, tensors = read_checkpoint(tmp_path / "model.safetensors")
    assert meta.epoch == 1
    assert all(torch.isfinite(t).all() for t in tensors.values())
    # The plot of the sound epochs is drawn; no grid from the diverged weights.
    assert (tmp_path / "losses.png").is_file()
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["epoch_0001.png"]
    with Image.open(tmp_path / "samples" / "epoch_0001.png") as grid:
        assert grid.mode == "L"  # a grey model's grid is a grey image


def test_nan_validation_loss_stops_and_keeps_the_best_checkpoint(tmp_path):
    class NanValidation(GaussianModel):
        def validation_loss(self, batch):
            losses = super().validation_loss(batch)
            return losses * float("nan") if self.steps > 7 else losses  # from epoch 2

    with pytest.raises(TrainingDiverged, match="val_loss became nan at epoch 2"):
        _train(tmp_path, epochs=3, model_class=NanValidation)
    meta, tensors = read_checkpoint(tmp_path / "model.safetensors")
    assert meta.epoch == 1 and math.isfinite(meta.metrics["val_loss"])
    assert all(torch.isfinite(t).all() for t in tensors.values())


@pytest.mark.parametrize("stop", ["max-steps", "interrupted"])
def test_a_run_stopped_mid_epoch_ends_with_a_grid_and_a_plot(tmp_path, stop):
    class Interrupted(GaussianModel):
        interrupt_at = 5

    if stop == "max-steps":
        result, _ = _train(tmp_path, epochs=2, max_steps=5)
    else:
        result, _ = _train(tmp_path, epochs=2, model_class=Interrupted)
    assert (result.stopped, result.epochs, result.steps) == (stop, 0, 5)
    # No epoch has ended: the plot shows the step records, the grid is named by the step.
    assert (tmp_path / "losses.png").is_file()
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["epoch_0001_step_000005.png"]
    # The resumed run writes its own grids and plot.
    _train(tmp_path, epochs=2, resume=True)
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["epoch_0001.png", "epoch_0001_step_000005.png", "epoch_0002.png"]


def test_a_run_stopped_at_an_epoch_end_ends_with_that_epochs_grid(tmp_path):
    result, _ = _train(tmp_path, epochs=3, max_steps=14, sample_every=-1)
    assert (result.stopped, result.epochs) == ("max-steps", 2)
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["epoch_0001.png", "epoch_0002.png"]


def test_max_steps_at_an_epochs_last_step_finishes_that_epoch(tmp_path):
    result, _ = _train(tmp_path / "two", epochs=4, max_steps=14)  # 7 steps per epoch
    assert (result.stopped, result.epochs, result.steps) == ("max-steps", 2, 14)
    assert [r["epoch"] for r in _records(tmp_path / "two", "epoch")] == [1, 2]
    assert load_resume(tmp_path / "two" / "resume.safetensors")["engine"]["step_in_epoch"] == 0
    result, _ = _train(tmp_path / "all", epochs=2, max_steps=14)
    assert (result.stopped, result.epochs, result.steps) == ("finished", 2, 14)


def test_resuming_a_run_that_has_its_epochs_trains_nothing(tmp_path):
    _train(tmp_path, epochs=3)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result, _ = _train(tmp_path, epochs=2, resume=True)
    assert (result.stopped, result.epochs, result.steps) == ("finished", 3, 21)
    assert len(result.history) == 3
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def test_resuming_a_run_that_has_its_max_steps_trains_nothing(tmp_path):
    _train(tmp_path, epochs=2, max_steps=5)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result, _ = _train(tmp_path, epochs=2, max_steps=5, resume=True)
    assert (result.stopped, result.epochs, result.steps) == ("max-steps", 0, 5)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def test_early_stopping_keeps_the_best(tmp_path):
    result, _ = _train(tmp_path, epochs=40, patience=2, lr=0.5)
    epochs = [r for r in _records(tmp_path) if r["type"] == "epoch"]
    best = min(r["val_loss"] for r in epochs)
    meta, _ = read_checkpoint(tmp_path / "model.safetensors")
    assert meta.metrics["val_loss"] == best == result.best_validation
    # A large step size makes the validation loss bounce, so patience 2 ends the run early.
    assert result.stopped == "early-stopped" and len(epochs) < 40
    assert [r["val_loss"] for r in epochs].index(best) == len(epochs) - 3


def test_bf16_autocast_trains(tmp_path):
    result, _ = _train(tmp_path, epochs=2, precision="bf16")
    epochs = [r for r in _records(tmp_path) if r["type"] == "epoch"]
    assert result.stopped == "finished" and epochs[1]["val_loss"] < epochs[0]["val_loss"]


def test_resume_without_state(tmp_path):
    with pytest.raises(UserError, match="holds no resume state"):
        _train(tmp_path, resume=True)


def test_sample_every_n_writes_exactly_those_epochs(tmp_path):
    _train(tmp_path / "each", epochs=3, sample_every=1)
    assert len(list((tmp_path / "each" / "samples").iterdir())) == 3
    _train(tmp_path / "second", epochs=3, sample_every=2)
    assert [p.name for p in (tmp_path / "second" / "samples").iterdir()] == ["epoch_0002.png"]
    _train(tmp_path / "never", epochs=3, sample_every=0)
    assert not (tmp_path / "never" / "samples").exists()


@pytest.fixture
def rare_writes(monkeypatch):
    """Epoch ends never due for a write after the first: everything waits for the end."""
    monkeypatch.setattr(Trainer, "WRITE_INTERVAL_S", 1e9)


def test_deferred_writes_keep_the_best_and_resume_exactly(tmp_path, rare_writes):
    result, _ = _train(tmp_path / "es", epochs=40, patience=2, lr=0.5)
    best = min(r["val_loss"] for r in _records(tmp_path / "es") if r["type"] == "epoch")
    meta, tensors = read_checkpoint(tmp_path / "es" / "model.safetensors")
    assert meta.metrics["val_loss"] == best == result.best_validation
    assert meta.epoch == result.epochs - 2  # the held copy, not the last weights
    # The resume state written at the run's end continues the same numbers.
    _, whole = _train(tmp_path / "whole", epochs=4)
    _train(tmp_path / "split", epochs=2)
    _, resumed = _train(tmp_path / "split", epochs=4, resume=True)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "split")
    # ... also from the middle of an epoch.
    _train(tmp_path / "mid", epochs=4, max_steps=10)
    _, resumed = _train(tmp_path / "mid", epochs=4, resume=True)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "mid")


def test_deferred_best_weights_survive_a_nan(tmp_path, rare_writes):
    class Diverging(GaussianModel):
        fail_at = 19  # epoch 3 (7 steps per epoch); epoch 2's best waits in memory

    with pytest.raises(TrainingDiverged, match="at epoch 3"):
        _train(tmp_path, epochs=4, model_class=Diverging)
    meta, tensors = read_checkpoint(tmp_path / "model.safetensors")
    assert meta.epoch == 2 and all(torch.isfinite(t).all() for t in tensors.values())
    state = load_resume(tmp_path / "resume.safetensors")
    assert state["engine"]["epoch"] == 1  # the last sound state written, never the NaN one


def test_sigterm_saves_like_ctrl_c_and_resumes_exactly(tmp_path):
    class Terminated(GaussianModel):
        interrupt_at, interrupt_signal = 9, signal.SIGTERM

    result, _ = _train(tmp_path / "run", epochs=3, model_class=Terminated)
    assert (result.stopped, result.steps, result.signal) == ("interrupted", 9, signal.SIGTERM)
    assert load_resume(tmp_path / "run" / "resume.safetensors")["engine"]["step"] == 9
    _, resumed = _train(tmp_path / "run", epochs=3, resume=True)
    _, whole = _train(tmp_path / "whole", epochs=3)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "run")


def _children() -> list[int]:
    """The processes this one started (DataLoader workers), from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_every_process_of_the_job_still_saves(tmp_path):
    """A scheduler signals the DataLoader workers too; one killed by it made torch raise in
    the main process before the run could save."""

    class Terminated(GaussianModel):
        def train_step(self, batch):
            if self.steps == 4:
                workers = _children()
                assert workers
                for pid in workers:
                    os.kill(pid, signal.SIGTERM)
                time.sleep(0.2)  # let a worker die of it, if it would
                os.kill(os.getpid(), signal.SIGTERM)
            return super().train_step(batch)

    result, _ = _train(tmp_path, epochs=3, model_class=Terminated, workers=1)
    assert (result.stopped, result.signal) == ("interrupted", signal.SIGTERM)
    assert load_resume(tmp_path / "resume.safetensors")["engine"]["step"] == result.steps


def test_a_second_ctrl_c_while_saving_lets_the_checkpoints_finish(tmp_path, monkeypatch):
    import gentool.checkpoint as checkpoint

    write = checkpoint.save_resume

    def interrupted_write(path, state):
        if state["engine"]["step"] == 9:  # the save after the first Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)  # the second, impatient one
        write(path, state)

    monkeypatch.setattr(checkpoint, "save_resume", interrupted_write)

    class Interrupted(GaussianModel):
        interrupt_at = 9

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, epochs=3, model_class=Interrupted)
    assert load_resume(tmp_path / "resume.safetensors")["engine"]["step"] == 9


def test_resuming_an_early_stopped_run_trains_nothing(tmp_path):
    result, _ = _train(tmp_path, epochs=40, patience=2, lr=0.5)
    assert result.stopped == "early-stopped"
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again, _ = _train(tmp_path, epochs=40, patience=2, lr=0.5, resume=True)
    assert (again.stopped, again.epochs, again.steps) == (
        "early-stopped",
        result.epochs,
        result.steps,
    )
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before
    more, _ = _train(tmp_path, epochs=40, patience=20, lr=0.5, resume=True)
    assert more.steps > result.steps  # a larger --patience trains on


def test_a_fresh_run_in_an_old_runs_folder_starts_from_nothing(tmp_path):
    """--overwrite: the earlier run's checkpoints and grids must not pass for the new run's."""
    _train(tmp_path, epochs=2)

    class Diverging(GaussianModel):
        fail_at = 2  # before the first epoch ends: no checkpoint of its own

    with pytest.raises(TrainingDiverged):
        _train(tmp_path, epochs=2, model_class=Diverging)
    assert not (tmp_path / "model.safetensors").exists()
    assert not (tmp_path / "resume.safetensors").exists()
    assert list((tmp_path / "samples").iterdir()) == []
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_resume_state_of_an_older_gentool_still_resumes(tmp_path):
    """Written before the engine noted a stop's own step record: the run resumes to the same
    weights (its log then keeps that one record, as it did)."""
    _train(tmp_path / "run", epochs=2, max_steps=10)
    path = tmp_path / "run" / "resume.safetensors"
    state = load_resume(path)
    del state["engine"]["stop_logged"]
    save_resume(path, state)
    _, resumed = _train(tmp_path / "run", epochs=2, resume=True)
    _, whole = _train(tmp_path / "whole", epochs=2)
    for key, value in whole.networks.state_dict().items():
        assert torch.equal(resumed.networks.state_dict()[key], value), key
    steps = [r["step"] for r in _records(tmp_path / "run", "step")]
    assert steps == sorted(steps) and 10 in steps
