"""A run's folder apart from its checkpoints: ``metrics.jsonl``, ``losses.png``, preview grids.

``metrics.jsonl`` holds one JSON object per line: ``{"type": "step", ...}`` every
``log_every`` steps of an epoch, at its last step and where the run stops, and
``{"type": "epoch", ...}`` when an epoch ends. A resumed run keeps the records up to its
resume point and appends, so its log is the log of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from gentool.checkpoint import MODEL_FILE, RESUME_FILE
from gentool.config import AUTO_SAMPLE_EVERY
from gentool.training.state import TrainState

__all__ = ["RunFolder"]

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "losses.png"
GRID_FOLDER = "samples"
#: Drawing the plot costs ~0.3 s: with fast epochs, at most once per this many seconds.
PLOT_INTERVAL_S = 30.0


class RunFolder:
    """The records of a run and the files drawn from them.

    Arguments:
        path: the run folder.
        title: the plot's title (the family's name).
        sample_every: ``--sample-every``: grids every N epochs, 0 never, -1 auto (every
            epoch, at most one per ``interval`` seconds, and one at the end).
        interval: seconds between auto grids.
        writes: False on the ranks of a job other than rank 0: they keep the records in
            memory and write nothing.
    """

    def __init__(
        self, path: Path, title: str, sample_every: int, interval: float, writes: bool = True
    ) -> None:
        self.path, self.title, self.writes = Path(path), title, writes
        self.sample_every, self.interval = sample_every, interval
        self.epochs: list[dict[str, Any]] = []  # the epoch records
        self.steps: list[dict[str, Any]] = []  # the step records
        self.last_plot = -math.inf
        self.last_grid = -math.inf
        self.grid_step = -1  # the step of the last grid this process wrote

    # -- a run's start ------------------------------------------------------------------------
    def clear(self) -> None:
        """A fresh run (``--overwrite``) starts from an empty record: an earlier run's files
        would otherwise pass for this one's until it writes its own (after a non-finite loss
        in the first epoch, forever)."""
        for name in (MODEL_FILE, RESUME_FILE, METRICS_FILE, PLOT_FILE):
            (self.path / name).unlink(missing_ok=True)
        for grid in (self.path / GRID_FOLDER).glob("epoch_*.png"):
            grid.unlink()

    def reload(self, state: TrainState, truncate: bool = True) -> None:
        """Keep the records logged up to the resumed step; drop any logged after it, and the
        record of the stop itself where no uninterrupted run would have logged one.
        ``truncate`` False reads them and leaves the file as it is (nothing to train)."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = []
        for line in lines:
            record = json.loads(line)
            stop_record = record["type"] == "step" and record["step"] == state.step
            if record["step"] > state.step or (stop_record and state.stop_logged):
                continue
            kept.append(line)
            (self.epochs if record["type"] == "epoch" else self.steps).append(record)
        if truncate and len(kept) < len(lines):
            path.write_text("".join(line + "\n" for line in kept))

    # -- records ------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        (self.epochs if record["type"] == "epoch" else self.steps).append(record)
        if self.writes:
            with open(self.path / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def last_metrics(self) -> dict[str, Any]:
        """The latest epoch record without its type: the metrics a checkpoint stores."""
        record = self.epochs[-1] if self.epochs else {}
        return {k: v for k, v in record.items() if k != "type"}

    def plot(self, force: bool = False) -> None:
        """``losses.png``: per epoch; per logged step when no epoch has ended yet."""
        if not force and time.perf_counter() - self.last_plot < PLOT_INTERVAL_S:
            return
        from gentool.plots import plot_losses

        records, by = (self.epochs, "epoch") if self.epochs else (self.steps, "step")
        if records:
            plot_losses(records, self.path / PLOT_FILE, title=self.title, by=by)
        self.last_plot = time.perf_counter()

    # -- preview grids ------------------------------------------------------------------------
    @property
    def auto_grids(self) -> bool:
        return self.sample_every == AUTO_SAMPLE_EVERY

    def grid_due(self, epoch: int) -> bool:
        """``--sample-every N``: every N epochs; auto: every epoch, at most one per interval."""
        if self.auto_grids:
            return time.perf_counter() - self.last_grid >= self.interval
        return self.sample_every > 0 and epoch % self.sample_every == 0

    def last_grid_due(self, step: int) -> bool:
        """Auto grids end the run with one of its final weights, unless this step has one."""
        return self.auto_grids and self.grid_step != step

    def write_grid(self, images: torch.Tensor, nrow: int, state: TrainState) -> None:
        """``samples/epoch_NNNN.png``; for a run stopped part-way through an epoch, the
        unfinished epoch and the step: ``epoch_NNNN_step_SSSSSS.png``."""
        from gentool.data.images import save_image

        folder = self.path / GRID_FOLDER
        folder.mkdir(exist_ok=True)
        name = f"epoch_{state.epoch:04d}"
        if state.step_in_epoch:
            name = f"epoch_{state.epoch + 1:04d}_step_{state.step:06d}"
        save_image(images, folder / f"{name}.png", nrow=nrow)
        self.last_grid, self.grid_step = time.perf_counter(), state.step
