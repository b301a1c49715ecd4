"""Learning-rate schedules of the translation families, stepped once per epoch."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import lr_scheduler

__all__ = ["linear_decay", "make_scheduler"]


def linear_decay(epochs: int, epochs_decay: int) -> Any:
    """The factor on the initial lr for the epoch after ``step`` completed epochs of a run of
    ``epochs``: 1 at first, then falling linearly over the last ``epochs_decay`` epochs towards
    zero (the last epoch trains at ``1 / (epochs_decay + 1)``, as in the reference, whose
    n_epochs is our ``epochs - epochs_decay``)."""
    epochs_decay = min(epochs_decay, epochs)
    constant = epochs - epochs_decay

    def factor(step: int) -> float:
        return 1.0 - max(0, step + 1 - constant) / float(epochs_decay + 1)

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, config: Any) -> Any:
    """The scheduler ``config.lr_policy`` names: ``linear`` (the papers'), ``step``,
    ``plateau`` (stepped with a loss) or ``cosine``, with the reference's constants."""
    policy = config.lr_policy
    if policy == "linear":
        factor = linear_decay(config.epochs, config.epochs_decay)
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
    if policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_epochs, gamma=0.1)
    if policy == "plateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.2, threshold=0.01, patience=5
        )
    if policy == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=0)
    raise ValueError(f"unknown lr_policy {policy!r}")
