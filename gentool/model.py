"""The base class every family's model derives from: networks, one training step, capabilities.

The engine (:mod:`gentool.training`) owns the loop, devices, logging, checkpoints and resume;
a model supplies what is special to its family. Images enter and leave every method as
float tensors in [0, 1] with shape ``[B, C, H, W]``; a family converts to its own range
(``[-1, 1]`` for a tanh generator, logit space for a flow) inside.

Batches, already on the model's device, by data kind:

- ``images``: a tuple ``(images, labels)``; labels are class indices, -1 where unknown;
  when scoring data with ground-truth masks, ``(images, labels, masks)`` (masks
  ``[B, 1, H, W]``, 1 on defective pixels), so read ``batch[0]`` rather than unpack two.
- ``unpaired`` and ``paired``: a dict ``{"A": images, "B": images}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from gentool.data.base import DataInfo

__all__ = ["Model"]


class Model:
    """A family's trainable model.

    Subclasses build their networks into ``self.networks`` in ``__init__`` (everything there
    is saved in ``model.safetensors``), create optimizers in :meth:`configure_training`, and
    implement :meth:`train_step` plus the capability methods their spec declares.

    Arguments:
        config: the family's hyperparameter dataclass instance.
        data: what the model needs to know about its data (shape, channels, levels).
        device: where the networks live.
    """

    #: True when :meth:`validation_loss` is implemented (enables early stopping).
    has_validation: ClassVar[bool] = False
    #: The key of :meth:`score_batch` that ranks anomalies (higher = more anomalous) for
    #: AUROC and AUPRC; None: ``nll`` when scored, else the first key.
    anomaly_score: ClassVar[str | None] = None
    #: True when :meth:`score_batch` returns an ``"anomaly_map"`` (``score --maps``).
    localizes: ClassVar[bool] = False

    def __init__(self, config: Any, data: DataInfo, device: torch.device) -> None:
        self.config = config
        self.data = data
        self.device = torch.device(device)
        self.networks = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}

    # -- training ---------------------------------------------------------------------------
    def configure_training(self) -> None:
        """Create ``self.optimizers`` (and ``self.schedulers``); called once before training."""
        raise NotImplementedError

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One optimisation step (forward, backward, optimizer steps) on one batch.

        Returns the losses to log as detached scalar tensors; the engine stops the run if
        any is not finite. The key ``"loss"``, when present, is shown in the progress bar.
        """
        raise NotImplementedError

    def validation_loss(self, batch: Any) -> torch.Tensor:
        """Per-example loss on held-out data, lower is better (for early stopping)."""
        raise NotImplementedError

    def end_validation(self) -> None:
        """Called after each validation pass (the last :meth:`validation_loss` batch): a
        model that learns something of the held-out images as a whole (an anomaly
        threshold from normal images' scores) sets it here, before the epoch's checkpoint."""

    def end_epoch(self, epoch: int) -> None:
        """Called after each epoch (0-based); the default steps every scheduler once."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors besides weights and optimizers that a resumed run needs (image pools)."""
        return {}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def preview(self, batch: Any) -> tuple[torch.Tensor, int] | None:
        """Images for the per-epoch grid and the number per row, or None for no grid.

        ``batch`` is a fixed batch of held-out data (the same every epoch).
        """
        return None

    def train(self, mode: bool = True) -> Model:
        self.networks.train(mode)
        return self

    def eval(self) -> Model:
        return self.train(False)

    # -- capabilities (implement those the family's spec declares) --------------------------
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` new images in [0, 1]."""
        raise NotImplementedError

    def translate(self, images: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        """Translate images in [0, 1]; same shape out. ``None``: the model's own direction."""
        raise NotImplementedError

    def begin_scoring(self) -> None:
        """Reset whatever :meth:`score_batch` accumulates across batches."""

    def score_batch(self, batch: Any) -> dict[str, torch.Tensor]:
        """Per-example scores for one batch, each a tensor of length B; a family that
        localises anomalies adds ``"anomaly_map"``, ``[B, H, W]`` at the images' size
        (higher = more anomalous)."""
        raise NotImplementedError

    def anomaly_threshold(self) -> float | None:
        """The :attr:`anomaly_score` above which an image is predicted anomalous, chosen
        without test labels and saved with the weights; None when the model has none."""
        return None

    def finish_scoring(self) -> dict[str, Any]:
        """Summary figures that need the whole data set (FID), after the last batch."""
        return {}

    def benchmarks(self, batch_size: int) -> dict[str, tuple[Any, int]]:
        """Extra operations for ``gentool bench``: name -> (zero-argument callable, images).

        Each callable runs once per timing, in eval mode under ``torch.inference_mode``;
        ``images`` is how many images one call handles (for the per-image figure); a bare
        callable in place of the pair counts as ``batch_size`` images. A name that a built-in
        operation already uses is reported with ``_extra`` appended.
        """
        return {}
