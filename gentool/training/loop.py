"""The training loop: epochs of steps, an epoch's end, and however the run stops."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gentool.checkpoint import MODEL_FILE, RESUME_FILE
from gentool.data.base import DataSource
from gentool.distributed import Distributed
from gentool.errors import TrainingDiverged, UserError
from gentool.family import FamilySpec
from gentool.model import Model
from gentool.request import Done, nothing_to_train
from gentool.runtime import backend_settings, forked_rng, precision_context, to_device
from gentool.training.batches import Loaders, make_loaders, preview_batch
from gentool.training.checkpoints import Checkpointer
from gentool.training.run_folder import RunFolder
from gentool.training.signals import StopFlag
from gentool.training.state import TrainState

__all__ = ["FitResult", "RunOptions", "Trainer", "fit"]

#: Seeds of the side streams: validation noise and preview grids are the same every epoch.
VALIDATION_SEED, PREVIEW_SEED = 104729, 1299709


@dataclass
class RunOptions:
    """How to run (not saved as hyperparameters)."""

    out: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resume: bool = False
    workers: int = 0
    log_every: int = 10  # steps between progress/metrics updates (and NaN checks)
    max_steps: int | None = None  # stop after this many steps in total (tests, smoke runs)
    progress: bool = True
    request: dict[str, Any] = field(default_factory=dict)  # TrainRequest.to_json(), to resume
    dist: Distributed = field(default_factory=Distributed)  # this process's rank (torchrun)
    precision: str = "fp32"  # fp32, tf32 (CUDA matmuls) or bf16 (autocast)


@dataclass
class FitResult:
    epochs: int
    steps: int
    stopped: str  # "finished", "early-stopped", "interrupted", "max-steps"
    best_validation: float | None
    checkpoint: Path
    history: list[dict[str, Any]]
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)


class Trainer:
    """One training job: ``model`` on ``source`` into ``run.out``; see :func:`fit`."""

    #: Seconds between checkpoint writes (and auto preview grids) when epochs are shorter.
    WRITE_INTERVAL_S = 10.0

    def __init__(self, spec: FamilySpec, model: Model, source: DataSource, run: RunOptions):
        self.spec, self.model, self.source, self.run = spec, model, source, run
        self.dist = run.dist
        self.schedule = model.config.schedule()
        self.state = TrainState()
        interval = self.WRITE_INTERVAL_S
        self.folder = RunFolder(
            run.out, spec.name, self.schedule.sample_every, interval, writes=self.dist.main
        )
        self.checkpoints = Checkpointer(run.out, spec, model, run.device, run.request, interval)

    def fit(self) -> FitResult:
        Path(self.run.out).mkdir(parents=True, exist_ok=True)
        self.model.configure_training()
        if self.run.resume:
            self.state = state = self.checkpoints.restore()
            done = Done(state.epoch, state.step, state.bad_epochs, state.best)
            stopped = nothing_to_train(self.schedule, done, self.run.max_steps)
            if self.dist.main:
                self.folder.reload(state, truncate=stopped is None)
            if stopped is not None:  # write nothing
                return self._result(stopped)
        elif self.dist.main:
            self.folder.clear()
        self.dist.prepare(self.model)
        loaders = make_loaders(
            self.source,
            self.schedule,
            self.model.has_validation,
            self.run.device,
            self.run.workers,
            self.dist.rank,
            self.dist.world,
        )
        preview = preview_batch(self.source, self.run.device)
        from gentool.progress import TrainProgress

        with StopFlag() as stop:
            try:
                with TrainProgress(self.run.progress and self.dist.main) as bar:
                    epochs, steps = self.schedule.epochs, len(loaders.train)
                    bar.start(self.spec.name, epochs, steps, self.state.epoch)
                    stopped = self._epochs(loaders, preview, stop, bar)
            except TrainingDiverged:
                # The epochs logged so far are sound, so their plot is drawn; no grid, since
                # the weights in memory took the non-finite step (the last good ones are on
                # disk).
                if self.dist.main:
                    with stop.protect():
                        self.checkpoints.flush_model()
                    self._write_end_files(None)
                raise
            finally:
                # Whatever ended the run (a non-finite loss or a second Ctrl-C included), the
                # best weights seen so far reach the disk; the resume state is written only
                # from a sound state below.
                if self.dist.main:
                    with stop.protect():
                        self.checkpoints.flush_model()
            if self.dist.main:
                self._save_at_stop(stopped, stop)
                self._write_end_files(preview)
        self.dist.barrier()
        return self._result(stopped, stop.signum if stopped == "interrupted" else None)

    def _epochs(self, loaders: Loaders, preview: Any, stop: StopFlag, bar: Any) -> str:
        """Epochs until the last, or until something stops the run; returns why it ended."""
        state = self.state
        while state.epoch < self.schedule.epochs:
            stopped = self.train_one_epoch(loaders, stop, bar)
            if stopped is not None:
                return stopped
            record, improved = self.end_epoch(loaders.validation)
            if self.dist.main:
                self.checkpoints.end_epoch(state, improved, _metrics(record))
                if preview is not None and self.folder.grid_due(state.epoch):
                    self.write_grid(preview)
            self.folder.log(record)
            if self.dist.main:
                self.folder.plot()
            bar.end_epoch(state.epoch, record, state.best)
            if loaders.validation is not None and self._patience_exhausted():
                return "early-stopped"
            if self._at_max_steps() and state.epoch < self.schedule.epochs:
                return "max-steps"
        return "finished"

    def train_one_epoch(self, loaders: Loaders, stop: StopFlag, bar: Any) -> str | None:
        """The epoch's steps, from where a resumed run left it; returns why the run stopped
        part-way (``"interrupted"``, ``"max-steps"``), or None at the epoch's end."""
        state, run, dist = self.state, self.run, self.dist
        self.source.set_epoch(state.epoch)
        loaders.sampler.set_epoch(state.epoch, state.step_in_epoch * self.schedule.batch_size)
        if dist.active:  # each rank draws its own noise, reproducibly per epoch
            torch.manual_seed(self.schedule.seed + 1_000_003 * dist.rank + state.epoch)
        self.model.train()
        started, first_step, steps = time.perf_counter(), state.step, len(loaders.train)
        for count, batch in enumerate(loaders.train, start=1):
            with precision_context(run.precision, run.device):
                losses = self.model.train_step(to_device(batch, run.device))
            state.add_losses(losses)
            last, at_max = count == steps, self._at_max_steps()
            # Log points count from the epoch's start, so a resumed epoch logs where an
            # uninterrupted one does. Ranks agree at log points only, so under torchrun they
            # all log (and stop) at the same steps; a single process stops at once.
            stopping = stop.requested and not dist.active
            regular = state.step_in_epoch % run.log_every == 0 or last
            if regular or at_max or stopping:
                state.stop_logged = not regular
                means = state.loss_means(dist)
                rate = (state.step - first_step) / max(time.perf_counter() - started, 1e-9)
                bar.update_step(state.step_in_epoch, means, rate)
                step = {"type": "step", "epoch": state.epoch + 1, "step": state.step}
                if dist.main:
                    self.folder.log({**step, **means})
                stopping = dist.any(stop.requested)
            if stopping or (at_max and not last):  # at an epoch's last step, it ends first
                state.average_over_ranks(dist, run.device)
                return "interrupted" if stopping else "max-steps"
        return None

    def end_epoch(self, validation: DataLoader | None) -> tuple[dict[str, Any], bool]:
        """Close the epoch: its mean losses, the schedulers' step, the learning rates and
        the validation loss; returns its record and whether it is the best so far."""
        state = self.state
        means = state.loss_means(self.dist)
        self.model.end_epoch(state.epoch)
        state.end_epoch()
        record: dict[str, Any] = {"type": "epoch", "epoch": state.epoch, "step": state.step}
        record.update(means)
        for name, optimizer in self.model.optimizers.items():
            record[f"lr_{name}"] = optimizer.param_groups[0]["lr"]
        if validation is None:
            return record, True
        value = self.validate(validation)
        improved = state.record_validation(value)
        record["val_loss"] = value
        return record, improved

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> float:
        """The mean validation loss, with the same noise every epoch."""
        self.model.eval()
        total, count = 0.0, 0
        with forked_rng(self.schedule.seed + VALIDATION_SEED, self.run.device):
            for batch in loader:
                losses = self.model.validation_loss(to_device(batch, self.run.device))
                total += float(losses.double().sum())
                count += losses.numel()
            self.model.end_validation()
        self.model.train()
        return total / max(count, 1)

    def write_grid(self, batch: Any) -> None:
        """The model's preview of the fixed ``batch`` (samples; real / translated / back)."""
        self.model.eval()
        with torch.no_grad(), forked_rng(self.schedule.seed + PREVIEW_SEED, self.run.device):
            result = self.model.preview(batch)
        self.model.train()
        if result is not None:
            images, nrow = result
            self.folder.write_grid(images, nrow, self.state)

    # -- the end of a run -----------------------------------------------------------------------
    def _save_at_stop(self, stopped: str, stop: StopFlag) -> None:
        """Checkpoints first, whole: a second Ctrl-C may cut the grid and plot short, never
        these."""
        with stop.protect():
            if stopped in ("interrupted", "max-steps"):
                self.checkpoints.save_resume(self.state)
                if not self.model.has_validation or self.state.best is None:
                    self.checkpoints.save_model(self.state, self.folder.last_metrics())
            elif self.checkpoints.resume_pending:
                self.checkpoints.save_resume(self.state)

    def _write_end_files(self, preview: Any) -> None:
        """The last grid (auto previews only) and the loss plot, however the run ended."""
        try:
            if preview is not None and self.folder.last_grid_due(self.state.step):
                self.write_grid(preview)
            self.folder.plot(force=True)
        except KeyboardInterrupt:
            # A second Ctrl-C asks to quit now: the checkpoints are on disk, these can go.
            pass

    def _patience_exhausted(self) -> bool:
        patience = self.schedule.patience
        return bool(self.model.has_validation and patience and self.state.bad_epochs >= patience)

    def _at_max_steps(self) -> bool:
        return self.run.max_steps is not None and self.state.step >= self.run.max_steps

    def _result(self, stopped: str, signum: int | None = None) -> FitResult:
        state, out = self.state, Path(self.run.out)
        history = self.folder.epochs
        return FitResult(
            state.epoch, state.step, stopped, state.best, out / MODEL_FILE, history, signum
        )


def _metrics(record: dict[str, Any]) -> dict[str, Any]:
    """An epoch record without its type: the metrics a checkpoint stores."""
    return {k: v for k, v in record.items() if k != "type"}


def fit(spec: FamilySpec, model: Model, source: DataSource, run: RunOptions) -> FitResult:
    """Train ``model`` on ``source`` into ``run.out``, or continue there with ``run.resume``."""
    if run.resume and not (Path(run.out) / RESUME_FILE).is_file():
        raise UserError(f"--resume: {run.out} holds no resume state ({RESUME_FILE})")
    with backend_settings(run.precision, run.device):
        return Trainer(spec, model, source, run).fit()
