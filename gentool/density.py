"""Density models of images: dequantisation, the logit transform and honest NLL / bits per dim.

A flow family subclasses :class:`DensityModel` and supplies only its flow (``build_flow``);
this module turns quantised images into the flow's space and back, and keeps the
change-of-variables bookkeeping so that every reported number is in data space and
comparable with the literature (the MAF paper's conventions):

1. A pixel with integer value ``k`` out of ``L`` levels is dequantised to
   ``y = (k + u) / L`` with ``u ~ U(0, 1)``, so ``y`` lies in (0, 1).
2. The logit transform ``w = logit(lam + (1 - 2 lam) y)`` maps (0, 1) to the real line;
   ``log |dw/dy| = log(1 - 2 lam) - log s - log(1 - s)`` with ``s = lam + (1 - 2 lam) y``.
3. The flow gives ``log p_W(w)``; then ``log p_Y(y) = log p_W(w) + sum log |dw/dy|``.
4. The discrete image has ``-log P(k) <= -log p_Y(y) + D log L`` (a cell of the
   dequantised space has volume ``L^-D``), reported in nats and as bits per dimension
   ``(-log p_Y(y) + D log L) / (D log 2)``.

Training may add Gaussian noise to ``y`` (:func:`smooth`), a prior that regularises the fit;
it changes which density is learnt, never how it is scored. ``logit_lambda`` and
``smoothing`` default to ``auto`` (:func:`resolve_auto`): one set of values for one-class
anomaly training, the MAF paper's for density estimation.

References:
    Papamakarios et al., Masked Autoregressive Flow for Density Estimation, NeurIPS 2017.
    https://arxiv.org/abs/1705.07057
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from gentool.config import DensityConfig
from gentool.errors import UserError
from gentool.model import Model

__all__ = ["DensityConfig", "DensityModel", "LogitTransform", "resolve_auto", "smooth"]

#: The value of an ``auto`` hyperparameter (``logit_lambda``, ``smoothing``).
AUTO = -1.0
#: What ``auto`` becomes: (one-class training, anything else). Measured on digits
#: (docs/benchmarks.md): both settings sharpen the NLL as an anomaly score and cost
#: bits/dim on the full data set, so density runs keep the MAF paper's values.
AUTO_VALUES = {"logit_lambda": (0.05, 1e-6), "smoothing": (0.1, 0.0)}


def resolve_auto(config: Any, data: Any) -> Any:
    """``config`` with every ``auto`` (-1) field set for its data: one-class or not.

    One-class training (a normal class: ``--normal-class``, MVTec's ``good``) learns the
    density of ~100 images to rank outsiders below them, where a smooth density ranks
    best; a plain density run wants the sharpest likelihood. Other negative values, NaN
    and infinity are rejected here, since the CLI's minimum lets -1 and NaN through; so is
    a logit lambda outside (0, 0.5), where the logit transform is undefined.
    """
    one_class = getattr(data, "normal_class", None) is not None
    changes = {}
    for name, (for_one_class, otherwise) in AUTO_VALUES.items():
        if getattr(config, name, None) == AUTO:
            changes[name] = for_one_class if one_class else otherwise
    lam = changes.get("logit_lambda", getattr(config, "logit_lambda", None))
    std = changes.get("smoothing", getattr(config, "smoothing", None))
    # NaN fails both comparisons, so it is refused too.
    if lam is not None and not 0.0 < lam < 0.5:  # where logit(lam + (1 - 2 lam) y) exists
        raise UserError(f"--logit-lambda must be -1 (auto) or between 0 and 0.5, not {lam:g}")
    if std is not None and not 0.0 <= std < math.inf:
        raise UserError(f"--smoothing must be -1 (auto) or at least 0, not {std:g}")
    return dataclasses.replace(config, **changes) if changes else config


def smooth(y: torch.Tensor, std: float) -> torch.Tensor:
    """``y + std * noise``, folded back into [0, 1] by reflection at its edges.

    Training on smoothed pixels fits the data convolved with a Gaussian, as a kernel
    density estimate does: on ~100 images it keeps the flow from learning sharp ridges
    around its training set, and keeps very simple images (mostly blank pixels) from
    scoring as likely. Reflection keeps every value where the logit transform is defined.

    References:
        | Noise Regularization for Conditional Density Estimation (Rothfuss et al., 2019)
        | https://arxiv.org/abs/1907.08982

    Example:
        >>> _ = torch.manual_seed(0)
        >>> y = torch.tensor([[0.01, 0.5, 0.99]]).expand(1000, 3)
        >>> z = smooth(y, 0.1)
        >>> bool(((z >= 0) & (z <= 1)).all()), round(z[:, 1].std().item(), 1)
        (True, 0.1)
    """
    if std <= 0:
        return y
    y = y + std * torch.randn_like(y)
    # A triangle wave of period 2: the identity on [0, 1], a mirror at every integer.
    return 1.0 - (torch.remainder(y, 2.0) - 1.0).abs()


class LogitTransform:
    """Dequantised pixels in (0, 1) <-> logit space, with the log-Jacobian of the map."""

    def __init__(self, lam: float) -> None:
        if not 0.0 < lam < 0.5:
            raise ValueError(f"logit lambda must lie in (0, 0.5), got {lam}")
        self.lam = lam

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``w = logit(lam + (1 - 2 lam) y)`` and ``sum log |dw/dy|`` per row."""
        s = self.lam + (1.0 - 2.0 * self.lam) * y
        w = torch.log(s) - torch.log1p(-s)
        log_det = math.log1p(-2.0 * self.lam) - torch.log(s) - torch.log1p(-s)
        return w, log_det.sum(dim=1)

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        return ((torch.sigmoid(w) - self.lam) / (1.0 - 2.0 * self.lam)).clamp(0.0, 1.0)


class DensityModel(Model):
    """Base class of flow families on images (``made``, ``maf``, ``iaf`` and plugins).

    Subclasses implement :meth:`build_flow`, returning a module on ``features`` dimensions
    with ``log_prob(w) -> [B]`` and ``sample(n, temperature) -> [n, features]``.
    """

    has_validation = True

    def __init__(self, config: Any, data: Any, device: torch.device) -> None:
        if data.levels < 2:  # only a damaged checkpoint's data description gets here
            raise UserError(f"the data has {data.levels} pixel levels; a density needs at least 2")
        # Resolved once, here: the engine, the checkpoint and `score` see the values used.
        super().__init__(resolve_auto(config, data), data, device)
        self.logit = LogitTransform(self.config.logit_lambda)
        self.networks["flow"] = self.build_flow(self.flow_features()).to(self.device)

    @property
    def flow(self) -> nn.Module:
        return self.networks["flow"]

    def build_flow(self, features: int) -> nn.Module:
        raise NotImplementedError

    def flow_features(self) -> int:
        """How many features the flow models: the pixels, ``data.dims``, unless a family
        models something else (pooled CNN features)."""
        return self.data.dims

    # -- data space <-> flow space --------------------------------------------------------------
    def dequantize(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """Images in [0, 1] with ``levels`` values -> ``y`` in (0, 1), flattened to [B, D]."""
        levels = self.data.levels
        k = torch.round(images.flatten(1) * (levels - 1))
        u = torch.rand(k.shape, generator=generator, device=k.device, dtype=k.dtype)
        return (k + u) / levels

    def log_prob_dequantized(self, y: torch.Tensor) -> torch.Tensor:
        """``log p_Y(y)`` in nats for dequantised pixels ``y`` in (0, 1), [B, D] -> [B]."""
        w, log_det = self.logit.forward(y)
        return self.flow.log_prob(w) + log_det

    def nll(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-image negative log-likelihood in nats of the discrete image (one noise draw)."""
        y = self.dequantize(images, generator)
        return -self.log_prob_dequantized(y) + self.data.dims * math.log(self.data.levels)

    def bits_per_dim(self, nll: torch.Tensor) -> torch.Tensor:
        return nll / (self.data.dims * math.log(2.0))

    # -- training -------------------------------------------------------------------------------
    def configure_training(self) -> None:
        self.optimizers["flow"] = torch.optim.Adam(
            self.flow.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        images, _ = batch
        optimizer = self.optimizers["flow"]
        optimizer.zero_grad(set_to_none=True)
        # With smoothing on, the logged training loss is the NLL of the smoothed pixels;
        # validation and scoring always use plain dequantised pixels.
        y = smooth(self.dequantize(images), self.config.smoothing)
        nll = -self.log_prob_dequantized(y) + self.data.dims * math.log(self.data.levels)
        loss = nll.mean()
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.flow.parameters(), self.config.grad_clip)
        optimizer.step()
        loss = loss.detach()
        return {"loss": loss, "bits_per_dim": self.bits_per_dim(loss)}

    @torch.no_grad()
    def validation_loss(self, batch: Any) -> torch.Tensor:
        images, _ = batch
        return self.nll(images)

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`dequantize`: ``y`` in [0, 1] -> level ``floor(y L)``, in [0, 1].

        The level whose cell ``[k / L, (k + 1) / L)`` holds ``y``, as a pixel value
        ``k / (L - 1)``: a sample is then an image of the data's own levels (pure black and
        white included), a draw from the discrete model that the NLL scores.
        """
        levels = self.data.levels
        return torch.floor(y * levels).clamp_(0, levels - 1) / (levels - 1)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the model saw its training images: ``[B, C, H, W]`` floats on its device.

        One image ``[C, H, W]`` becomes a batch of one; another channel count is converted
        (grey <-> RGB, ITU-R 601 luma) and another size resized (antialiased), as
        ``gentool score`` prepares image files by the checkpoint's data description.
        Integer tensors and values outside [0, 1] are refused: their scale is ambiguous.
        """
        from gentool.data.images import resize_image, to_channels

        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4:
            raise UserError(
                f"images must be [N, C, H, W] (or one [C, H, W]), not {list(images.shape)}"
            )
        if not images.is_floating_point():
            raise UserError(
                f"images must be floats in [0, 1], not {images.dtype} (divide by the maximum value)"
            )
        low, high = (float(v) for v in images.aminmax()) if images.numel() else (0.0, 0.0)
        if not 0.0 <= low <= high <= 1.0:  # NaN fails this too
            raise UserError(f"images must be floats in [0, 1], not in [{low:g}, {high:g}]")
        images = images.to(self.device, next(self.flow.parameters()).dtype)
        # As the data source prepared the training images: the checkpoint's description.
        prep = self.data.preprocessing
        images = to_channels(images, prep.channels or self.data.channels)
        size = prep.resize or (self.data.height, self.data.width)
        return resize_image(images, size, prep.interpolation or "bilinear")

    # -- capabilities ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` images on the data's pixel levels; ``temperature`` scales the base noise."""
        if not 0.0 < temperature < math.inf:  # NaN too: it would make black images silently
            raise UserError(f"--temperature must be a positive number, not {temperature:g}")
        w = self.flow.sample(n, temperature)
        return self.quantize(self.logit.inverse(w)).reshape(n, *self.data.shape)

    @torch.no_grad()
    def score_batch(self, batch: Any) -> dict[str, torch.Tensor]:
        """NLL (nats) and bits/dim per image, an importance-weighted bound over noise draws.

        ``batch`` is images in [0, 1] (or an ``(images, labels)`` pair), prepared by
        :meth:`prepare`.
        """
        images = self.prepare(batch[0] if isinstance(batch, tuple | list) else batch)
        draws = torch.stack([self.nll(images) for _ in range(self.config.score_samples)])
        # -log mean_k exp(-nll_k): tighter than the mean of the draws, and still a bound.
        nll = -(torch.logsumexp(-draws, dim=0) - math.log(draws.shape[0]))
        return {"nll": nll, "bits_per_dim": self.bits_per_dim(nll)}

    def preview(self, batch: Any) -> tuple[torch.Tensor, int]:
        return self.sample(64), 8
