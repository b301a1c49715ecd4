"""Where a run stands: its counters, the best validation loss, an epoch's running loss sums."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from gentool.errors import TrainingDiverged

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """The engine's part of a run, saved in the resume state as it is.

    The running loss sums of the current epoch and their step count are kept on the
    device (no synchronisation per step) and saved too, so an epoch resumed part-way
    reports the mean over all its steps, as an uninterrupted one does.
    """

    epoch: int = 0  # epochs completed
    step: int = 0  # optimisation steps completed, in the whole run
    step_in_epoch: int = 0
    best: float | None = None  # the best validation loss so far
    bad_epochs: int = 0  # epochs since the best
    loss_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_count: int = 0
    #: The last step record was logged only because the run stopped there (Ctrl-C,
    #: ``--max-steps``): an uninterrupted run has no such record, so a resumed run drops it.
    stop_logged: bool = False

    def add_losses(self, losses: dict[str, torch.Tensor]) -> None:
        """Count one step and add its losses to the epoch's sums."""
        for key, value in losses.items():
            value = value.detach().float()
            sums = self.loss_sums
            sums[key] = sums[key] + value if key in sums else value.clone()
        self.step += 1
        self.step_in_epoch += 1
        self.loss_count += 1

    def loss_means(self, dist: Any) -> dict[str, float]:
        """The epoch's mean losses so far (over all ranks); a NaN or infinity stops the run."""
        if not self.loss_count:
            return {}
        means = dist.mean({k: float(v) / self.loss_count for k, v in self.loss_sums.items()})
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"{bad[0]} became {means[bad[0]]} at epoch {self.epoch + 1}, step {self.step}"
            )
        return means

    def average_over_ranks(self, dist: Any, device: torch.device) -> None:
        """Rank 0 alone saves the loss sums of an epoch stopped part-way: under torchrun it
        saves the ranks' mean, which every rank starts from when the run resumes."""
        if dist.active and self.loss_sums:
            means = dist.mean({k: float(v) for k, v in self.loss_sums.items()})
            self.loss_sums = {k: torch.tensor(v, device=device) for k, v in means.items()}

    def end_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch = 0
        self.loss_sums, self.loss_count = {}, 0
        self.stop_logged = False

    def record_validation(self, value: float) -> bool:
        """Count an epoch's validation loss; True when it is the best so far."""
        if math.isnan(value):
            # NaN compares false with everything: as the best it could never be beaten, and
            # as a later value it would pass for a mere bad epoch. The weights that gave it
            # are not sound; the best ones so far are kept, as for a NaN loss.
            raise TrainingDiverged(f"val_loss became nan at epoch {self.epoch}")
        improved = self.best is None or value < self.best
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return improved

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "loss_sums": self.loss_sums,
            "loss_count": self.loss_count,
            "stop_logged": self.stop_logged,
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any], device: torch.device) -> TrainState:
        # A resume state written before the sums were kept has neither: the epoch's mean
        # then covers the steps after the resume only.
        sums = saved.get("loss_sums", {})
        return cls(
            epoch=saved["epoch"],
            step=saved["step"],
            step_in_epoch=saved["step_in_epoch"],
            best=saved["best"],
            bad_epochs=saved["bad_epochs"],
            loss_sums={k: v.to(device) for k, v in sums.items()},
            loss_count=saved.get("loss_count", 0),
            stop_logged=saved.get("stop_logged", False),
        )
