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

References:
    Papamakarios et al., Masked Autoregressive Flow for Density Estimation, NeurIPS 2017.
    https://arxiv.org/abs/1705.07057
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gentool.config import DensityConfig
from gentool.model import Model

__all__ = ["DensityConfig", "DensityModel", "LogitTransform"]


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
        super().__init__(config, data, device)
        self.logit = LogitTransform(config.logit_lambda)
        self.networks["flow"] = self.build_flow(data.dims).to(self.device)

    @property
    def flow(self) -> nn.Module:
        return self.networks["flow"]

    def build_flow(self, features: int) -> nn.Module:
        raise NotImplementedError

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
        nll = self.nll(images)
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

    # -- capabilities ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        w = self.flow.sample(n, temperature)
        return self.logit.inverse(w).reshape(n, *self.data.shape)

    @torch.no_grad()
    def score_batch(self, batch: Any) -> dict[str, torch.Tensor]:
        """NLL (nats) and bits/dim per image, an importance-weighted bound over noise draws."""
        images = batch[0] if isinstance(batch, tuple | list) else batch
        draws = torch.stack([self.nll(images) for _ in range(self.config.score_samples)])
        # -log mean_k exp(-nll_k): tighter than the mean of the draws, and still a bound.
        nll = -(torch.logsumexp(-draws, dim=0) - math.log(draws.shape[0]))
        return {"nll": nll, "bits_per_dim": self.bits_per_dim(nll)}

    def preview(self, batch: Any) -> tuple[torch.Tensor, int]:
        return self.sample(64), 8
