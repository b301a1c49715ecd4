"""The one training loop every family runs through.

The engine owns what is the same for all families: seeding, devices, the data order,
progress on stderr, ``metrics.jsonl``, loss plots and preview grids, checkpoints each epoch
(at most one write per ``Trainer.WRITE_INTERVAL_S`` when epochs are shorter), resume, early
stopping on a validation split, Ctrl-C and SIGTERM safety and the non-finite-loss guard.
A family supplies only its :class:`gentool.model.Model`.

Reproducibility: the data order of epoch ``e`` is a permutation drawn from a generator
seeded by ``(seed, e)``, and augmentation is seeded per (seed, epoch, index) by the data
layer, so neither depends on the global RNG. The global RNG (dropout, dequantisation noise,
image pools) is saved in the resume state, and so are the running loss sums of an epoch
stopped part-way. A resumed run therefore continues with exactly the numbers an
uninterrupted run would have produced, in the weights and in ``metrics.jsonl``'s epoch
records.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from gentool.checkpoint import MODEL_FILE, RESUME_FILE, CheckpointMeta, load_resume, save_model
from gentool.checkpoint import save_resume as write_resume
from gentool.config import AUTO_SAMPLE_EVERY, config_to_dict
from gentool.data.base import DataSource
from gentool.distributed import Distributed
from gentool.errors import TrainingDiverged, UserError
from gentool.family import FamilySpec
from gentool.model import Model
from gentool.runtime import (
    backend_settings,
    check_precision,
    forked_rng,
    precision_context,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    to_device,
)

__all__ = [
    "FitResult",
    "RunOptions",
    "TrainingDiverged",
    "backend_settings",
    "check_precision",
    "fit",
    "precision_context",
    "resolve_device",
    "seed_everything",
    "to_device",
]


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
    request: dict[str, Any] = field(default_factory=dict)  # the data asked for, to resume it
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


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from ``(seed, epoch)``, optionally starting part-way.

    With several processes, each takes every ``world``-th index of the same permutation,
    all with the same count, so every rank runs the same number of steps.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g)
        shard = order[: self.size - self.size % self.world][self.rank :: self.world]
        return iter(shard[self.start :].tolist())

    def __len__(self) -> int:
        return self.size // self.world - self.start


def split_validation(
    dataset: Dataset, fraction: float, seed: int
) -> tuple[Dataset, Dataset | None]:
    """A fixed, seeded hold-out of ``fraction`` of the training set for early stopping."""
    n = len(dataset)
    n_val = int(round(n * fraction))
    if fraction <= 0 or n_val == 0:
        return dataset, None
    if n_val >= n:
        raise UserError(f"--val-fraction {fraction} leaves no training images out of {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return Subset(dataset, order[n_val:]), Subset(dataset, order[:n_val])


class _StopFlag:
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's or torchrun's kill) asks the loop to stop
    after the current step and save; a second Ctrl-C aborts at once.

    A repeated SIGTERM never aborts: a scheduler may signal every process of a job, and
    torchrun forwards its own, so one stop can arrive twice. While :meth:`protect` holds
    (checkpoint writes at the end of a run), a second Ctrl-C waits until the write is done.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the signal that asked to stop
        self._interrupts = 0
        self._protected = False
        self._abort_pending = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if _in_main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                if self._protected:
                    self._abort_pending = True
                    return
                raise KeyboardInterrupt
        if not self.requested:
            self.requested, self.signum = True, signum

    @contextmanager
    def protect(self) -> Iterator[None]:
        """Let a second Ctrl-C abort only once the block (a checkpoint write) is done."""
        self._protected = True
        try:
            yield
        finally:
            self._protected = False
        if self._abort_pending:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM to the main process: a scheduler signals every
    process of a job, and a worker killed by it would make torch raise in the main process
    before the run could save. The workers end with their iterator, or with the main
    process (torch watches it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class Trainer:
    """Runs one training job; see :func:`fit`."""

    #: Seconds between checkpoint writes (and auto preview grids) when epochs are shorter.
    WRITE_INTERVAL_S = 10.0

    def __init__(self, spec: FamilySpec, model: Model, source: DataSource, run: RunOptions):
        self.spec, self.model, self.source, self.run = spec, model, source, run
        self.dist = run.dist
        self.config = model.config
        self.out = Path(run.out)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimisation steps completed
        self.step_in_epoch = 0
        self.best: float | None = None
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []  # the epoch records
        self.step_history: list[dict[str, Any]] = []  # the step records
        self.last_plot = 0.0
        # The epoch's running loss sums and their step count; saved in the resume state, so
        # an epoch resumed part-way reports the mean over all its steps.
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.loss_count = 0
        self.epoch_means: dict[str, float] = {}
        # Files written at epoch ends, at most every WRITE_INTERVAL_S (see _end_epoch).
        self.last_write = -math.inf
        self.last_preview = -math.inf
        self.preview_step = -1  # the step of the last grid written by this process
        self.resume_pending = False
        self.pending_model: tuple[dict[str, torch.Tensor], CheckpointMeta] | None = None

    # -- data -----------------------------------------------------------------------------------
    def _loaders(self) -> tuple[DataLoader, DataLoader | None]:
        train = self.source.split("train")
        fraction = getattr(self.config, "val_fraction", 0.0) if self.model.has_validation else 0.0
        train, val = split_validation(train, fraction, self.config.seed)
        if len(train) == 0:
            raise UserError("the training split is empty (check --data and --normal-class)")
        batch = self.config.batch_size
        self.sampler = EpochSampler(len(train), self.config.seed, self.dist.rank, self.dist.world)
        pin = self.run.device.type == "cuda"
        # Each DataLoader iterator draws a worker seed; from its own generator, that draw
        # leaves the global RNG alone, so a run resumed mid-epoch sees the same numbers.
        loader_rng = torch.Generator().manual_seed(self.config.seed)
        common = {
            "num_workers": self.run.workers,
            "pin_memory": pin,
            "generator": loader_rng,
            "worker_init_fn": _ignore_stop_signals if self.run.workers else None,
        }
        # A last batch of one image breaks batch norm; drop the ragged end when there is more.
        drop_last = len(self.sampler) > batch
        train_loader = DataLoader(
            train, batch_size=batch, sampler=self.sampler, drop_last=drop_last, **common
        )
        val_loader = DataLoader(val, batch_size=max(batch, 256), **common) if val else None
        return train_loader, val_loader

    def _preview_batch(self) -> Any:
        try:
            split = self.source.split("test")
        except UserError:
            split = self.source.split("train")
        items = [split[i] for i in range(min(4, len(split)))]
        if not items:
            return None
        return to_device(torch.utils.data.default_collate(items), self.run.device)

    # -- checkpoints ----------------------------------------------------------------------------
    def _meta(self, metrics: dict[str, Any]) -> CheckpointMeta:
        return CheckpointMeta(
            family=self.spec.name,
            plugin=self.spec.plugin,
            plugin_version=self.spec.plugin_version,
            config=config_to_dict(self.config),
            data=self.model.data.to_json(),
            epoch=self.epoch,
            step=self.step,
            metrics=metrics,
        )

    def _save_model(self, metrics: dict[str, Any]) -> None:
        save_model(self.out / MODEL_FILE, self.model.networks.state_dict(), self._meta(metrics))
        self.pending_model = None

    def _hold_model(self, metrics: dict[str, Any]) -> None:
        """Keep a copy of the weights as they are now, to be written by :meth:`_flush_model`."""
        state = {k: v.detach().clone() for k, v in self.model.networks.state_dict().items()}
        self.pending_model = (state, self._meta(metrics))

    def _flush_model(self) -> None:
        if self.pending_model is not None:
            state, meta = self.pending_model
            save_model(self.out / MODEL_FILE, state, meta)
            self.pending_model = None

    def _save_resume(self) -> None:
        state = {
            "meta": self._meta({}).to_strings(),
            "request": self.run.request,
            "networks": self.model.networks.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.model.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.model.schedulers.items()},
            "extra": self.model.extra_state(),
            "rng": rng_state(self.run.device),
            "engine": {
                "epoch": self.epoch,
                "step": self.step,
                "step_in_epoch": self.step_in_epoch,
                "best": self.best,
                "bad_epochs": self.bad_epochs,
                "loss_sums": self.loss_sums,
                "loss_count": self.loss_count,
            },
        }
        write_resume(self.out / RESUME_FILE, state)
        self.resume_pending = False

    def _restore(self) -> None:
        state = load_resume(self.out / RESUME_FILE)
        self.model.networks.load_state_dict(state["networks"])
        for name, optimizer in self.model.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.model.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        self.model.load_extra_state({k: v.to(self.run.device) for k, v in state["extra"].items()})
        set_rng_state(state["rng"], self.run.device)
        engine = state["engine"]
        self.epoch, self.step = engine["epoch"], engine["step"]
        self.step_in_epoch, self.best = engine["step_in_epoch"], engine["best"]
        self.bad_epochs = engine["bad_epochs"]
        # A resume state written before the sums were kept has neither: the epoch's mean
        # then covers the steps after the resume only.
        sums = engine.get("loss_sums", {})
        self.loss_sums = {k: v.to(self.run.device) for k, v in sums.items()}
        self.loss_count = engine.get("loss_count", 0)
        if self.dist.main:
            self._reload_history()

    def _reload_history(self) -> None:
        """Keep the metrics logged up to the resumed step; drop any logged after it."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = []
        for line in lines:
            record = json.loads(line)
            if record["step"] <= self.step:
                kept.append(line)
                history = self.history if record["type"] == "epoch" else self.step_history
                history.append(record)
        if len(kept) < len(lines):
            path.write_text("".join(line + "\n" for line in kept))

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        self.out.mkdir(parents=True, exist_ok=True)
        self.model.configure_training()
        if self.run.resume:
            self._restore()
        elif self.dist.main:
            self._clear_previous_run()
        if self.epoch >= self.config.epochs:  # resumed with no epoch left: write nothing
            return self._result("finished")
        if self._patience_exhausted():  # resumed after early stopping: write nothing
            return self._result("early-stopped")
        if self._at_max_steps():  # resumed with its --max-steps made: write nothing
            return self._result("max-steps")
        self.dist.prepare(self.model)
        train_loader, val_loader = self._loaders()
        preview = self._preview_batch()
        from gentool.progress import TrainProgress

        show = self.run.progress and self.dist.main
        with _StopFlag() as stop:
            try:
                with TrainProgress(show) as bar:
                    bar.start(self.spec.name, self.config.epochs, len(train_loader), self.epoch)
                    stopped = self._train(train_loader, val_loader, preview, stop, bar)
            except TrainingDiverged:
                # The epochs logged so far are sound, so their plot is drawn; no grid, since
                # the weights in memory took the non-finite step (the last good ones are on
                # disk).
                if self.dist.main:
                    with stop.protect():
                        self._flush_model()
                    self._write_end_files(None)
                raise
            finally:
                # Whatever ended the run (a non-finite loss or a second Ctrl-C included), the
                # best weights seen so far reach the disk; the resume state is written only
                # from a sound state below.
                if self.dist.main:
                    with stop.protect():
                        self._flush_model()
            if self.dist.main:
                # Checkpoints first, whole: a second Ctrl-C may cut the grid and plot short,
                # never these.
                with stop.protect():
                    if stopped in ("interrupted", "max-steps"):
                        self._save_resume()
                        if not self.model.has_validation or self.best is None:
                            self._save_model(self._last_metrics())
                    elif self.resume_pending:
                        self._save_resume()
                self._write_end_files(preview)
        self.dist.barrier()
        return self._result(stopped, stop.signum if stopped == "interrupted" else None)

    def _clear_previous_run(self) -> None:
        """A fresh run (``--overwrite``) starts from an empty record: an earlier run's files
        would otherwise pass for this one's until it writes its own (after a non-finite loss
        in the first epoch, forever)."""
        for name in (MODEL_FILE, RESUME_FILE, "metrics.jsonl", "losses.png"):
            (self.out / name).unlink(missing_ok=True)
        for grid in (self.out / "samples").glob("epoch_*.png"):
            grid.unlink()

    def _patience_exhausted(self) -> bool:
        patience = getattr(self.config, "patience", 0)
        return bool(self.model.has_validation and patience and self.bad_epochs >= patience)

    def _result(self, stopped: str, signum: int | None = None) -> FitResult:
        return FitResult(
            self.epoch, self.step, stopped, self.best, self.out / MODEL_FILE, self.history, signum
        )

    def _train(
        self, train_loader: DataLoader, val_loader: DataLoader | None, preview: Any, stop, bar
    ) -> str:
        """Epochs until the last, or until something stops the run; returns why it ended."""
        while self.epoch < self.config.epochs:
            stopped = self._run_epoch(train_loader, stop, bar)
            if stopped != "epoch":
                return stopped
            stopped = self._end_epoch(val_loader, preview, bar)
            if stopped != "epoch":
                return stopped
            if self._at_max_steps() and self.epoch < self.config.epochs:
                return "max-steps"
        return "finished"

    def _write_end_files(self, preview: Any) -> None:
        """The last grid (auto previews only) and the loss plot, however the run ended."""
        try:
            if preview is not None and self._preview_auto() and self.preview_step != self.step:
                self._write_preview(preview)
            self._plot(force=True)
        except KeyboardInterrupt:
            # A second Ctrl-C asks to quit now: the checkpoints are on disk, these can go.
            pass

    def _run_epoch(self, loader: DataLoader, stop: _StopFlag, bar: Any) -> str:
        self.source.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, self.step_in_epoch * self.config.batch_size)
        if self.dist.active:  # each rank draws its own noise, reproducibly per epoch
            torch.manual_seed(self.config.seed + 1_000_003 * self.dist.rank + self.epoch)
        self.model.train()
        sums = self.loss_sums  # restored part-way through an epoch, else empty
        started, window_start = time.perf_counter(), self.step
        for count, batch in enumerate(loader, start=1):
            with precision_context(self.run.precision, self.run.device):
                losses = self.model.train_step(to_device(batch, self.run.device))
            for key, value in losses.items():
                value = value.detach().float()
                sums[key] = sums[key] + value if key in sums else value.clone()
            self.step += 1
            self.step_in_epoch += 1
            self.loss_count += 1
            last = count == len(loader)
            at_max = self._at_max_steps()
            # Log points count from the epoch's start, so a resumed epoch logs where an
            # uninterrupted one does. Ranks agree at log points only, so they all log (and
            # stop) at the same steps.
            at_log = self.step_in_epoch % self.run.log_every == 0 or last or at_max
            at_log = at_log or (stop.requested and not self.dist.active)
            stopping = stop.requested and not self.dist.active
            if at_log:
                means = self._check_finite(sums, self.loss_count)
                rate = (self.step - window_start) / max(time.perf_counter() - started, 1e-9)
                bar.update_step(self.step_in_epoch, means, rate)
                if self.dist.main:
                    record = {"type": "step", "epoch": self.epoch + 1, "step": self.step, **means}
                    self._log(record)
                    self.step_history.append(record)
                stopping = self.dist.any(stop.requested)
            if stopping:
                return self._pause("interrupted")
            if at_max and not last:  # at an epoch's last step, the epoch ends first
                return self._pause("max-steps")
        self.epoch_means = self._check_finite(sums, self.loss_count) if self.loss_count else {}
        return "epoch"

    def _pause(self, stopped: str) -> str:
        """Stop part-way through an epoch. Rank 0 alone saves the loss sums, so under torchrun
        it saves the ranks' mean, which every rank starts from when the run resumes."""
        if self.dist.active and self.loss_sums:
            means = self.dist.mean({k: float(v) for k, v in self.loss_sums.items()})
            device = self.run.device
            self.loss_sums = {k: torch.tensor(v, device=device) for k, v in means.items()}
        return stopped

    def _at_max_steps(self) -> bool:
        return self.run.max_steps is not None and self.step >= self.run.max_steps

    def _check_finite(self, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        means = self.dist.mean({k: float(v) / count for k, v in sums.items()})
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"{bad[0]} became {means[bad[0]]} at epoch {self.epoch + 1}, step {self.step}"
            )
        return means

    def _end_epoch(self, val_loader: DataLoader | None, preview: Any, bar: Any) -> str:
        self.model.end_epoch(self.epoch)
        self.epoch += 1
        self.step_in_epoch = 0
        self.loss_sums, self.loss_count = {}, 0
        record: dict[str, Any] = {"type": "epoch", "epoch": self.epoch, "step": self.step}
        record.update(self.epoch_means)
        for name, optimizer in self.model.optimizers.items():
            record[f"lr_{name}"] = optimizer.param_groups[0]["lr"]
        improved = True
        if val_loader is not None:
            value = self._validate(val_loader)
            if math.isnan(value):
                # NaN compares false with everything: as the best it could never be beaten,
                # and as a later value it would pass for a mere bad epoch. The weights that
                # gave it are not sound; the best ones so far are kept, as for a NaN loss.
                raise TrainingDiverged(f"val_loss became nan at epoch {self.epoch}")
            record["val_loss"] = value
            improved = self.best is None or value < self.best
            if improved:
                self.best, self.bad_epochs = value, 0
            else:
                self.bad_epochs += 1
        self.history.append(record)
        if self.dist.main:
            # A checkpoint each epoch, but when epochs take less than WRITE_INTERVAL_S (small
            # one-class sets: one step an epoch) at most one write per interval: the best
            # weights wait in memory, the resume state is simply written later. The run's
            # end writes whatever waits, so no result is lost, and a crash loses at most
            # one interval of training.
            due = time.perf_counter() - self.last_write >= self.WRITE_INTERVAL_S
            if improved:
                if due:
                    self._save_model(self._last_metrics(record))
                else:
                    self._hold_model(self._last_metrics(record))
            if due:
                self._flush_model()
                self._save_resume()
                self.last_write = time.perf_counter()
            else:
                self.resume_pending = True
            if preview is not None and self._preview_due():
                self._write_preview(preview)
            self._log(record)
            self._plot()
        bar.end_epoch(self.epoch, record, self.best)
        if val_loader is not None and self._patience_exhausted():
            return "early-stopped"
        return "epoch"

    def _last_metrics(self, record: dict[str, Any] | None = None) -> dict[str, Any]:
        record = record or (self.history[-1] if self.history else {})
        return {k: v for k, v in record.items() if k != "type"}

    @torch.no_grad()
    def _validate(self, loader: DataLoader) -> float:
        self.model.eval()
        total, count = 0.0, 0
        with forked_rng(self.config.seed + 104729, self.run.device):
            for batch in loader:
                losses = self.model.validation_loss(to_device(batch, self.run.device))
                total += float(losses.double().sum())
                count += losses.numel()
        self.model.train()
        return total / max(count, 1)

    def _preview_auto(self) -> bool:
        return self.config.sample_every == AUTO_SAMPLE_EVERY

    def _preview_due(self) -> bool:
        """``--sample-every N``: every N epochs; auto: every epoch, at most one per interval."""
        every = self.config.sample_every
        if self._preview_auto():
            return time.perf_counter() - self.last_preview >= self.WRITE_INTERVAL_S
        return every > 0 and self.epoch % every == 0

    def _write_preview(self, batch: Any) -> None:
        from gentool.data.images import save_image

        self.model.eval()
        with torch.no_grad(), forked_rng(self.config.seed + 1299709, self.run.device):
            result = self.model.preview(batch)
        self.model.train()
        if result is None:
            return
        images, nrow = result
        folder = self.out / "samples"
        folder.mkdir(exist_ok=True)
        name = f"epoch_{self.epoch:04d}"
        if self.step_in_epoch:  # a run stopped part-way: the unfinished epoch and the step
            name = f"epoch_{self.epoch + 1:04d}_step_{self.step:06d}"
        save_image(images, folder / f"{name}.png", nrow=nrow)
        self.last_preview, self.preview_step = time.perf_counter(), self.step

    def _plot(self, force: bool = False) -> None:
        # Plotting costs ~0.3 s; for fast epochs draw at most every 30 s, and at the end.
        if not force and time.perf_counter() - self.last_plot < 30:
            return
        from gentool.plots import plot_losses

        # Per epoch; a run stopped before its first epoch ended shows its step records.
        records, by = (self.history, "epoch") if self.history else (self.step_history, "step")
        if records:
            plot_losses(records, self.out / "losses.png", title=self.spec.name, by=by)
        self.last_plot = time.perf_counter()


def fit(spec: FamilySpec, model: Model, source: DataSource, run: RunOptions) -> FitResult:
    """Train ``model`` on ``source`` into ``run.out``, or continue there with ``run.resume``."""
    if run.resume and not (Path(run.out) / RESUME_FILE).is_file():
        raise UserError(f"--resume: {run.out} holds no resume state ({RESUME_FILE})")
    with backend_settings(run.precision, run.device):
        return Trainer(spec, model, source, run).fit()
