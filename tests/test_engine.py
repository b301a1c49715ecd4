"""The training engine: logging, checkpoints, resume, Ctrl-C, the NaN guard, early stopping.

A small but real density model (a diagonal Gaussian in logit space) trains on scikit-learn
digits here, so these tests exercise the engine alone; the families have their own tests.
"""

import json
import os
import signal
from dataclasses import dataclass

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from gentool.checkpoint import load_resume, read_checkpoint
from gentool.config import DensityConfig
from gentool.data.base import DataInfo, DataSource
from gentool.density import DensityModel
from gentool.engine import RunOptions, Trainer, fit
from gentool.errors import TrainingDiverged, UserError
from gentool.family import DataKind, FamilySpec


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

    def build_flow(self, features):
        self.steps = 0
        return DiagonalGaussian(features)

    def train_step(self, batch):
        self.steps += 1
        if self.steps == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
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
    out, epochs=4, resume=False, max_steps=None, model_class=GaussianModel, precision="fp32", **cfg
):
    torch.manual_seed(0)
    config = Config(epochs=epochs, batch_size=50, **{"lr": 0.05, **cfg})
    model = model_class(config, Digits().info, torch.device("cpu"))
    run = RunOptions(
        out, resume=resume, max_steps=max_steps, progress=False, log_every=3, precision=precision
    )
    return fit(SPEC, model, Digits(), run), model


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_writes_a_complete_run(tmp_path):
    result, _ = _train(tmp_path, epochs=3)
    assert result.stopped == "finished" and result.epochs == 3
    epochs = [r for r in _records(tmp_path) if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]  # it learns on real data
    for name in ("model.safetensors", "resume.safetensors", "losses.png"):
        assert (tmp_path / name).is_file()
    # Auto previews: epochs this short get the first grid and the last, not one each.
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["epoch_0001.png", "epoch_0003.png"]
    meta, _ = read_checkpoint(tmp_path / "model.safetensors", "gauss")
    assert meta.metrics["val_loss"] == pytest.approx(result.best_validation)
    assert DataInfo.from_json(meta.data).levels == 17


def test_resume_equals_uninterrupted(tmp_path):
    _, whole = _train(tmp_path / "whole", epochs=4)
    _train(tmp_path / "split", epochs=2)
    _, resumed = _train(tmp_path / "split", epochs=4, resume=True)
    for key, value in whole.networks.state_dict().items():
        assert torch.equal(resumed.networks.state_dict()[key], value), key
    a = [r for r in _records(tmp_path / "whole") if r["type"] == "epoch"]
    b = [r for r in _records(tmp_path / "split") if r["type"] == "epoch"]
    assert a == b


def test_resume_mid_epoch_equals_uninterrupted(tmp_path):
    _, whole = _train(tmp_path / "whole", epochs=2)
    result, _ = _train(tmp_path / "split", epochs=2, max_steps=5)  # 7 steps per epoch
    assert result.stopped == "max-steps"
    _, resumed = _train(tmp_path / "split", epochs=2, resume=True)
    for key, value in whole.networks.state_dict().items():
        assert torch.equal(resumed.networks.state_dict()[key], value), key


def test_ctrl_c_saves_and_resumes(tmp_path):
    class Interrupted(GaussianModel):
        interrupt_at = 9

    result, _ = _train(tmp_path / "run", epochs=3, model_class=Interrupted)
    assert result.stopped == "interrupted" and result.steps == 9
    assert (tmp_path / "run" / "resume.safetensors").is_file()
    _, resumed = _train(tmp_path / "run", epochs=3, resume=True)
    _, whole = _train(tmp_path / "whole", epochs=3)
    for key, value in whole.networks.state_dict().items():
        assert torch.equal(resumed.networks.state_dict()[key], value), key


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    class Diverging(GaussianModel):
        fail_at = 12  # epoch 2 (7 steps per epoch)

    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2"):
        _train(tmp_path, epochs=3, model_class=Diverging)
    meta, tensors = read_checkpoint(tmp_path / "model.safetensors", "gauss")
    assert meta.epoch == 1
    assert all(torch.isfinite(t).all() for t in tensors.values())


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
    for key, value in whole.networks.state_dict().items():
        assert torch.equal(resumed.networks.state_dict()[key], value), key


def test_deferred_best_weights_survive_a_nan(tmp_path, rare_writes):
    class Diverging(GaussianModel):
        fail_at = 19  # epoch 3 (7 steps per epoch); epoch 2's best waits in memory

    with pytest.raises(TrainingDiverged, match="at epoch 3"):
        _train(tmp_path, epochs=4, model_class=Diverging)
    meta, tensors = read_checkpoint(tmp_path / "model.safetensors", "gauss")
    assert meta.epoch == 2 and all(torch.isfinite(t).all() for t in tensors.values())
    state = load_resume(tmp_path / "resume.safetensors")
    assert state["engine"]["epoch"] == 1  # the last sound state written, never the NaN one
