"""What CycleGAN and Pix2Pix share: network building, optimisers, schedules, inference, scoring."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from gentool.data.base import DataInfo
from gentool.errors import UserError
from gentool.model import Model
from gentool_translation.inference import match_channels, run_generator
from gentool_translation.losses import GANLoss
from gentool_translation.networks import (
    build_discriminator,
    build_generator,
    init_weights,
    output_size,
    unet_downsamplings,
)
from gentool_translation.schedule import make_scheduler

__all__ = ["DistributionMetric", "TranslationModel", "set_requires_grad", "to_signed", "to_unit"]


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images to the generators' tanh range [-1, 1]."""
    return images * 2 - 1


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network output back to [0, 1] images."""
    return ((images + 1) / 2).clamp(0, 1)


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    """Freeze or unfreeze networks (a frozen D still passes gradients through to G)."""
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)


class DistributionMetric(Protocol):
    """A whole-set metric between real and translated images (FID, KID), fed batch by batch.

    :meth:`TranslationModel.distribution_metrics` returns these; none exist yet.
    """

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...


class TranslationModel(Model):
    """The common part of the translation models; a subclass builds its networks and steps.

    Subclasses call :meth:`build_generator` / :meth:`build_discriminator` in ``__init__``
    (weights drawn on the CPU from torch's global generator, then moved to the device, so a
    seed gives the same weights on every device) and list their optimiser groups in
    :meth:`parameter_groups`.
    """

    def __init__(self, config: Any, data: DataInfo, device: torch.device) -> None:
        super().__init__(config, data, device)
        self.channels = data.channels
        self.gan_loss = GANLoss(config.gan_mode, config.lambda_gp)
        # Without batch norm every image is normalised on its own, so several inputs to one
        # network can run as one batch with the same result and far fewer kernel launches.
        self.batch_inputs = config.norm != "batch"
        self._epoch_loss_sum = 0.0
        self._epoch_steps = 0
        self._scores: dict[str, list[torch.Tensor]] = {}
        self._distribution: dict[str, DistributionMetric] = {}

    # -- networks -------------------------------------------------------------------------------
    def _initialised(self, net: nn.Module) -> nn.Module:
        init_weights(net, self.config.init_type, self.config.init_gain)
        return net.to(self.device)

    def build_generator(self, in_channels: int, out_channels: int) -> nn.Module:
        cfg, height, width = self.config, self.data.height, self.data.width
        if cfg.generator == "unet":
            downs = cfg.unet_downs or min(unet_downsamplings(height), unet_downsamplings(width))
            if downs < 5 or height % 2**downs or width % 2**downs:
                levels = max(5, downs)
                raise UserError(
                    f"--generator unet with {levels} downsamplings needs image sides divisible "
                    f"by {2**levels} (got {height}x{width}); change --image-size or --unet-downs"
                )
        elif height % 4 or width % 4 or min(height, width) < 8:
            raise UserError(
                f"--generator resnet needs image sides that are multiples of 4 and at least 8 "
                f"(got {height}x{width}); change --image-size"
            )
        else:
            downs = 0
        net = build_generator(
            cfg.generator,
            in_channels,
            out_channels,
            image_size=min(height, width),
            ngf=cfg.ngf,
            n_blocks=cfg.n_blocks,
            unet_downs=downs,
            norm=cfg.norm,
            dropout=cfg.dropout,
        )
        return self._initialised(net)

    def build_discriminator(self, in_channels: int) -> nn.Module:
        cfg = self.config
        net = build_discriminator(
            cfg.discriminator, in_channels, ndf=cfg.ndf, n_layers=cfg.n_layers_d, norm=cfg.norm
        )
        side = min(self.data.height, self.data.width)
        if output_size(net, side) < 1:
            layers = 3 if cfg.discriminator == "basic" else cfg.n_layers_d
            raise UserError(
                f"a PatchGAN with {layers} layers cannot judge {side} px images; use a larger "
                "--image-size, or --discriminator n_layers with a smaller --n-layers-d"
            )
        return self._initialised(net)

    # -- training -------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimiser, e.g. ``{"G": [...], "D": [...]}``."""
        raise NotImplementedError

    def configure_training(self) -> None:
        betas = (self.config.beta1, 0.999)
        # At batch size 1 a step is bound by kernel launches, not arithmetic; fused Adam
        # updates every tensor in a few kernels instead of several per parameter tensor.
        fused = self.device.type == "cuda"
        for name, parameters in self.parameter_groups().items():
            optimizer = torch.optim.Adam(parameters, lr=self.config.lr, betas=betas, fused=fused)
            self.optimizers[name] = optimizer
            self.schedulers[name] = make_scheduler(optimizer, self.config)

    def record_epoch_loss(self, loss: torch.Tensor) -> None:
        """Accumulate the generator loss the ``plateau`` policy steps on (syncs only then)."""
        if self.config.lr_policy == "plateau":
            self._epoch_loss_sum += float(loss.detach())
            self._epoch_steps += 1

    def end_epoch(self, epoch: int) -> None:
        if self.config.lr_policy != "plateau":
            super().end_epoch(epoch)
            return
        # The reference steps its plateau scheduler with a metric it never sets; step on the
        # epoch's mean generator loss instead.
        mean = self._epoch_loss_sum / max(1, self._epoch_steps)
        for scheduler in self.schedulers.values():
            scheduler.step(mean)
        self._epoch_loss_sum, self._epoch_steps = 0.0, 0

    # -- inference ------------------------------------------------------------------------------
    def signed_input(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size on any device -> [-1, 1] on the model's device, with the
        model's channel count."""
        matched = match_channels(images, self.channels)
        if matched is None:
            raise UserError(
                f"this model takes {self.channels}-channel images, got {images.shape[1]} channels"
            )
        return to_signed(matched.to(self.device, torch.float32))

    def generate(self, generator: nn.Module, signed: torch.Tensor) -> torch.Tensor:
        """``generator`` applied at inference (any size, see :func:`run_generator`)."""
        return run_generator(generator, signed, eval_mode=self.config.eval_mode)

    # -- scoring --------------------------------------------------------------------------------
    def distribution_metrics(self) -> dict[str, DistributionMetric]:
        """Whole-set metrics per translation direction (``"a2b"``: real B vs fake B).

        Hook for FID/KID: return accumulators here and :meth:`score_batch` feeds them, and
        :meth:`finish_scoring` reports them as ``<name>_<direction>``. None exist yet.
        """
        return {}

    def begin_scoring(self) -> None:
        self._scores = {}
        self._distribution = self.distribution_metrics()

    def record_scores(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for name, values in scores.items():
            self._scores.setdefault(name, []).append(values.detach().float().cpu())
        return scores

    def feed_distribution(self, direction: str, real: torch.Tensor, fake: torch.Tensor) -> None:
        metric = self._distribution.get(direction)
        if metric is not None:
            metric.update(real, fake)

    def finish_scoring(self) -> dict[str, Any]:
        """Means of the per-image scores, plus the distribution metrics when there are any."""
        summary: dict[str, Any] = {
            f"mean_{name}": float(torch.cat(values).mean()) for name, values in self._scores.items()
        }
        for direction, metric in self._distribution.items():
            summary.update({f"{k}_{direction}": v for k, v in metric.compute().items()})
        return summary
