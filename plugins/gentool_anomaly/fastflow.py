"""FastFlow: 2D flows over a frozen CNN's feature maps, with per-pixel anomaly maps."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentool.api import DataInfo, Model, UserError, heat_colours, load_backbone, resize_image
from gentool_anomaly.flow2d import FastFlow2d

__all__ = ["FastFlowModel"]

#: Normal pixels kept per validation image for the pixel threshold (a uniform subsample).
PIXELS_PER_IMAGE = 4096


class _FeatureNorm(nn.Module):
    """Layer normalisation of a whole feature map (channels, height and width together, as
    FastFlow normalises ResNet features), then a learnt scale and shift per channel, so one
    model serves any input size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x, x.shape[1:])
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class _Thresholds(nn.Module):
    """The anomaly thresholds, chosen on held-out normal images and saved with the weights:
    ``image`` for the image score, ``pixel`` for the map (NaN until the first validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("image", torch.tensor(math.nan))
        self.register_buffer("pixel", torch.tensor(math.nan))


class FastFlowModel(Model):
    """The ``fastflow`` family: one :class:`~gentool_anomaly.flow2d.FastFlow2d` per backbone
    stage, trained by maximum likelihood on normal images' features.

    Every location of every stage gets its exact negative log-likelihood (nats per
    channel); the anomaly map is their mean over the stages, each upsampled (bilinear) to
    the image; the image's score is the map's maximum (``--image-score mean``: the mean
    NLL). The thresholds are a quantile of the held-out normal images' scores
    (``--threshold-quantile``), so no test label chooses them. The backbone is frozen and
    not saved: a checkpoint names it, its stages and its weights' SHA-256, and scoring
    rebuilds and checks it.

    References:
        | FastFlow: Unsupervised Anomaly Detection and Localization via 2D Normalizing
        | Flows (Yu et al., 2021). https://arxiv.org/abs/2111.07677
    """

    has_validation = True
    localizes = True

    def __init__(self, config: Any, data: DataInfo, device: torch.device) -> None:
        backbone = load_backbone(
            config.backbone,
            tuple(config.stages),
            config.backbone_weights,
            seed=config.seed,
            device=device,
            expected_sha256=config.backbone_sha256 or None,
        )
        _check_size(data, backbone.strides, config.stages)
        # Resolved once: the checkpoint holds the digest of the backbone it was trained on.
        super().__init__(dataclasses.replace(config, backbone_sha256=backbone.sha256), data, device)
        self.backbone = backbone  # frozen and not in self.networks: it is not saved
        c = self.config
        self.networks["norms"] = nn.ModuleList(_FeatureNorm(ch) for ch in backbone.channels)
        self.networks["flows"] = nn.ModuleList(
            FastFlow2d(ch, c.flow_steps, c.hidden_ratio, c.conv3x3_only, c.clamp, c.seed + i)
            for i, ch in enumerate(backbone.channels)
        )
        self.networks["thresholds"] = _Thresholds()
        self.networks.to(self.device)
        self._held_out: tuple[list[Tensor], list[Tensor]] = ([], [])

    @property
    def anomaly_score(self) -> str:  # type: ignore[override]
        """The score key of ``--image-score``: the map's maximum, or the mean NLL."""
        return "nll" if self.config.image_score == "mean" else "map_max"

    # -- the density of features --------------------------------------------------------------
    def prepare(self, images: Tensor) -> Tensor:
        """Images in [0, 1] at the model's size, on its device."""
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or not images.is_floating_point():
            raise UserError(f"images must be float [N, C, H, W] in [0, 1], not {images.dtype}")
        images = images.to(self.device)
        size = (self.data.height, self.data.width)
        interpolation = self.data.preprocessing.interpolation or "bilinear"
        return resize_image(images, size, interpolation)

    def level_maps(self, images: Tensor) -> list[Tensor]:
        """Each stage's NLL per location, ``[B, h, w]`` in nats per channel."""
        features = self.backbone(self.prepare(images))
        norms, flows = self.networks["norms"], self.networks["flows"]
        return [flow.nll_map(norm(f)) for f, norm, flow in zip(features, norms, flows, strict=True)]

    def anomaly_map(self, level_maps: list[Tensor]) -> Tensor:
        """The mean of the stages' NLL maps, each upsampled to the model's size: ``[B, H, W]``."""
        size = (self.data.height, self.data.width)
        maps = [
            F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            for m in level_maps
        ]
        return torch.stack(maps).mean(dim=0)

    @staticmethod
    def image_nll(level_maps: list[Tensor]) -> Tensor:
        """Each image's mean NLL per channel and location, over the stages: ``[B]``."""
        return torch.stack([m.flatten(1).mean(dim=1) for m in level_maps]).mean(dim=0)

    # -- training -----------------------------------------------------------------------------
    def configure_training(self) -> None:
        self.optimizers["flows"] = torch.optim.Adam(
            self.networks.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )

    def train_step(self, batch: Any) -> dict[str, Tensor]:
        optimizer = self.optimizers["flows"]
        optimizer.zero_grad(set_to_none=True)
        loss = torch.stack([m.mean() for m in self.level_maps(batch[0])]).mean()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def validation_loss(self, batch: Any) -> Tensor:
        maps = self.level_maps(batch[0])
        nll, pixels = self.image_nll(maps), self.anomaly_map(maps).flatten(1)
        keep = torch.randperm(pixels.shape[1], device=pixels.device)[:PIXELS_PER_IMAGE]
        scores = nll if self.anomaly_score == "nll" else pixels.max(dim=1).values
        self._held_out[0].append(scores.cpu())
        self._held_out[1].append(pixels[:, keep].flatten().cpu())
        return nll

    def end_validation(self) -> None:
        from gentool.api import threshold_from_normal

        scores, pixels = self._held_out
        if scores:
            quantile = self.config.threshold_quantile
            thresholds = self.networks["thresholds"]
            thresholds.image.fill_(threshold_from_normal(torch.cat(scores), quantile))
            thresholds.pixel.fill_(threshold_from_normal(torch.cat(pixels), quantile))
        self._held_out = ([], [])

    def preview(self, batch: Any) -> tuple[Tensor, int]:
        """The held-out images over their heat maps (one colour scale for the batch)."""
        images = self.prepare(batch[0])
        amap = self.anomaly_map(self.level_maps(images)).cpu()
        low, high = float(amap.min()), float(amap.max())
        heat = heat_colours(amap, low, high)
        rgb = images.cpu().expand(-1, 3, -1, -1)
        return torch.cat([rgb, 0.5 * rgb + 0.5 * heat]), len(images)

    # -- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def score_batch(self, batch: Any) -> dict[str, Tensor]:
        """``map_max`` (the image's anomaly score), ``nll`` (the features' mean NLL per
        channel and location) and the ``anomaly_map`` itself."""
        maps = self.level_maps(batch[0] if isinstance(batch, tuple | list) else batch)
        amap = self.anomaly_map(maps)
        return {
            "map_max": amap.flatten(1).max(dim=1).values,
            "nll": self.image_nll(maps),
            "anomaly_map": amap,
        }

    def anomaly_threshold(self) -> float | None:
        value = float(self.networks["thresholds"].image)
        return value if math.isfinite(value) else None

    def benchmarks(self, batch_size: int) -> dict[str, tuple[Callable[[], Any], int]]:
        """The frozen backbone alone, and the flows alone on its features."""
        size = (self.data.height, self.data.width)
        images = torch.rand(batch_size, self.data.channels, *size, device=self.device)
        features = self.backbone(images)
        norms, flows = self.networks["norms"], self.networks["flows"]

        def flows_only() -> list[Tensor]:
            return [
                flow.nll_map(norm(f)) for f, norm, flow in zip(features, norms, flows, strict=True)
            ]

        return {
            "backbone": (lambda: self.backbone(images), batch_size),
            "flows": (flows_only, batch_size),
        }


def _check_size(data: DataInfo, strides: tuple[int, ...], stages: tuple[str, ...]) -> None:
    """Each stage's map needs at least 2x2 locations (a 3x3 convolution sees neighbours)."""
    need = 2 * max(strides)
    if min(data.height, data.width) < need:
        raise UserError(
            f"fastflow with stages {', '.join(stages)} needs images of at least {need}x{need} "
            f"pixels, not {data.height}x{data.width}; use --image-size {max(need, 64)} or more"
        )
