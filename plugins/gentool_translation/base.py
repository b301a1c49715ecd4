"""What CycleGAN and Pix2Pix share: network building, optimisers, schedules, inference, scoring."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from gentool.api import DataInfo, Model, UserError, to_channels
from gentool_translation.inference import run_generator
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

    :meth:`TranslationModel.distribution_metrics` returns these (the accumulators of
    :func:`gentool.api.fid_kid_metrics`). A ``network`` attribute, where there is
    one, names the feature network the values depend on (reported as ``fid_network``).
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
        # None after begin_scoring: built with the first batch. Outside a scoring pass (bench
        # timing score_batch) there are none.
        self._distribution: dict[str, DistributionMetric] | None = {}
        self._fed: dict[tuple[str, str], set[str]] = {}

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
        model's channel count (grey <-> RGB as :func:`gentool.api.to_channels` converts, and an
        alpha channel dropped)."""
        have = images.shape[1]
        if have == 4 and self.channels in (1, 3):
            images = images[:, :3]  # RGBA: the colour without its alpha, as files load
        if images.shape[1] != self.channels and {images.shape[1], self.channels} != {1, 3}:
            raise UserError(f"this model takes {self.channels}-channel images, got {have} channels")
        return to_signed(to_channels(images, self.channels).to(self.device, torch.float32))

    def generate(self, generator: nn.Module, signed: torch.Tensor) -> torch.Tensor:
        """``generator`` applied at inference (any size, see :func:`run_generator`)."""
        return run_generator(generator, signed, eval_mode=self.config.eval_mode)

    # -- scoring --------------------------------------------------------------------------------
    #: The directions :meth:`score_batch` feeds to the distribution metrics.
    score_directions: tuple[str, ...] = ("a2b",)

    def distribution_metrics(self) -> dict[str, DistributionMetric]:
        """Whole-set metrics per translation direction (``"a2b"``: real B vs fake B): FID and
        KID from Inception-v3 features when its weights are cached, else none (one line on
        stderr says so). :meth:`score_batch` feeds them and :meth:`finish_scoring` reports
        them as ``<name>_<direction>``, with ``fid_network`` naming the network used.
        """
        from gentool.api import fid_kid_metrics

        return fid_kid_metrics(self.score_directions, self.device)

    def begin_scoring(self) -> None:
        self._scores = {}
        # Built with the first batch, so a batch that cannot be scored fails before the
        # Inception network loads (or its absence is announced).
        self._distribution = None
        self._fed = {}

    @staticmethod
    def check_scoring_batch(batch: Any) -> dict[str, Any]:
        """The batch, if it holds A and B images; a translation model cannot score a plain
        folder of images (``--images``), which has no targets to compare with."""
        if not isinstance(batch, dict) or "A" not in batch or "B" not in batch:
            raise UserError(
                "translation families score A/B data: use --data NAME|DIR (trainA/ testA/ "
                "trainB/ testB/, or aligned pairs), not --images"
            )
        return batch

    def record_scores(
        self, scores: dict[str, torch.Tensor], keys: dict[str, list[str] | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """Keep per-image scores for the summary's means and return them unchanged. With
        ``keys`` (score name -> source file of each image), an image repeated by an unaligned
        split counts once in the mean."""
        for name, values in scores.items():
            values = self._first_seen(name, "score", values, (keys or {}).get(name))
            self._scores.setdefault(name, []).append(values.detach().float().cpu())
        return scores

    def feed_distribution(
        self,
        direction: str,
        real: torch.Tensor,
        fake: torch.Tensor,
        real_keys: list[str] | None = None,
        fake_keys: list[str] | None = None,
    ) -> None:
        """Feed a direction's metric; with keys (source file paths), each image only once.

        An unaligned test split repeats the smaller domain to the larger one's length; FID
        and KID should see every test image exactly once.
        """
        if self._distribution is None:
            self._distribution = self.distribution_metrics()
        metric = self._distribution.get(direction)
        if metric is None:
            return
        real = self._first_seen(direction, "real", real, real_keys)
        fake = self._first_seen(direction, "fake", fake, fake_keys)
        metric.update(real, fake)

    def _first_seen(
        self, direction: str, side: str, images: torch.Tensor, keys: list[str] | None
    ) -> torch.Tensor:
        if keys is None:
            return images
        seen = self._fed.setdefault((direction, side), set())
        keep = []
        for index, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                keep.append(index)
        return images[keep] if len(keep) < len(keys) else images

    def finish_scoring(self) -> dict[str, Any]:
        """Means and medians of the per-image scores (each source image once), plus the
        distribution metrics when there are any."""
        summary: dict[str, Any] = {}
        for name, parts in self._scores.items():
            values = torch.cat(parts)
            summary[f"mean_{name}"] = float(values.mean())
            summary[f"median_{name}"] = float(values.median())
        for direction, metric in (self._distribution or {}).items():
            network = getattr(metric, "network", None)
            if network:
                summary["fid_network"] = network
            summary.update({f"{k}_{direction}": v for k, v in metric.compute().items()})
        return summary
