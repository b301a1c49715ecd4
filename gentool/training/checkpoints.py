"""When a run writes its checkpoints, which weights ``model.safetensors`` keeps, and resuming.

After every epoch the run writes ``resume.safetensors`` (the latest weights, optimizers,
schedulers, RNG states, the family's extra state and the engine's counters) and, when the
epoch improved the validation loss (or the family has none), ``model.safetensors``. When
epochs take less than ``interval`` seconds (a one-class digits epoch is one step), at most
one write per interval: improved weights wait as an in-memory copy and the resume state
is simply written later. The end of a run writes whatever waits, so no result is lost and
a crash loses at most one interval of training.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from gentool import checkpoint
from gentool.checkpoint import MODEL_FILE, RESUME_FILE, CheckpointMeta
from gentool.config import config_to_dict
from gentool.family import FamilySpec
from gentool.model import Model
from gentool.runtime import rng_state, set_rng_state
from gentool.training.state import TrainState

__all__ = ["Checkpointer"]


class Checkpointer:
    """The checkpoints of one run in ``out``.

    Arguments:
        out: the run folder.
        spec: the family (its name and plugin go into the metadata).
        model: the model being trained.
        device: the training device (whose RNG the resume state holds).
        request: what the run was asked to train on (``TrainRequest.to_json()``), saved
            in the resume state so that ``--resume`` needs no data flag again.
        interval: seconds between writes when epochs are shorter.
    """

    def __init__(
        self,
        out: Path,
        spec: FamilySpec,
        model: Model,
        device: torch.device,
        request: dict[str, Any],
        interval: float,
    ) -> None:
        self.out, self.spec, self.model, self.device = Path(out), spec, model, device
        self.request, self.interval = request, interval
        self.last_write = -math.inf
        self.resume_pending = False  # a resume state is due but waits for the interval
        self.held: tuple[dict[str, torch.Tensor], CheckpointMeta] | None = None

    def meta(self, state: TrainState, metrics: dict[str, Any]) -> CheckpointMeta:
        return CheckpointMeta(
            family=self.spec.name,
            plugin=self.spec.plugin,
            plugin_version=self.spec.plugin_version,
            config=config_to_dict(self.model.config),
            data=self.model.data.to_json(),
            epoch=state.epoch,
            step=state.step,
            metrics=metrics,
        )

    # -- at an epoch's end ------------------------------------------------------------------
    def end_epoch(self, state: TrainState, improved: bool, metrics: dict[str, Any]) -> None:
        """Write this epoch's checkpoints, or hold them until the interval has passed."""
        due = time.perf_counter() - self.last_write >= self.interval
        if improved:
            if due:
                self.save_model(state, metrics)
            else:
                self.hold_model(state, metrics)
        if due:
            self.flush_model()
            self.save_resume(state)
            self.last_write = time.perf_counter()
        else:
            self.resume_pending = True

    # -- the weights to use -------------------------------------------------------------------
    def save_model(self, state: TrainState, metrics: dict[str, Any]) -> None:
        weights = self.model.networks.state_dict()
        checkpoint.save_model(self.out / MODEL_FILE, weights, self.meta(state, metrics))
        self.held = None

    def hold_model(self, state: TrainState, metrics: dict[str, Any]) -> None:
        """Keep a copy of the weights as they are now, to be written by :meth:`flush_model`."""
        weights = {k: v.detach().clone() for k, v in self.model.networks.state_dict().items()}
        self.held = (weights, self.meta(state, metrics))

    def flush_model(self) -> None:
        """Write the weights held in memory, if any."""
        if self.held is not None:
            weights, meta = self.held
            checkpoint.save_model(self.out / MODEL_FILE, weights, meta)
            self.held = None

    # -- resume ---------------------------------------------------------------------------------
    def save_resume(self, state: TrainState) -> None:
        model = self.model
        checkpoint.save_resume(
            self.out / RESUME_FILE,
            {
                "meta": self.meta(state, {}).to_strings(),
                "request": self.request,
                "networks": model.networks.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in model.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in model.schedulers.items()},
                "extra": model.extra_state(),
                "rng": rng_state(self.device),
                "engine": state.to_dict(),
            },
        )
        self.resume_pending = False

    def restore(self) -> TrainState:
        """Load the resume state into the model (its optimizers configured) and the RNGs;
        return the engine's counters."""
        saved = checkpoint.load_resume(self.out / RESUME_FILE)
        model = self.model
        model.networks.load_state_dict(saved["networks"])
        for name, optimizer in model.optimizers.items():
            optimizer.load_state_dict(saved["optimizers"][name])
        for name, scheduler in model.schedulers.items():
            scheduler.load_state_dict(saved["schedulers"][name])
        model.load_extra_state({k: v.to(self.device) for k, v in saved["extra"].items()})
        set_rng_state(saved["rng"], self.device)
        return TrainState.from_dict(saved["engine"], self.device)
