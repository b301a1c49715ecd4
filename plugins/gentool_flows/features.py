"""A flow over an image's pooled CNN features: ``maf --features BACKBONE``, an image-level
anomaly detector with an exact density in feature space."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from gentool.api import UserError, load_backbone
from gentool_flows.batchnorm import BatchNorm

__all__ = ["PIXELS", "FeatureSpace", "check_feature_data"]

#: The ``--features`` value of the pixel path: the flow models the pixels themselves.
PIXELS = "pixels"


class FeatureSpace(nn.Module):
    """An image's features from a frozen backbone, each chosen stage averaged over its
    locations and the stages concatenated, then standardised by an invertible batch norm
    whose log-determinant the density keeps (so the NLL is that of the raw features).

    The backbone is frozen and not saved, as for ``fastflow``: the config holds its name,
    stages, weights and their SHA-256, checked when the model is rebuilt. The standardiser
    is in ``networks`` and saved.

    Arguments:
        config: a flow config with ``features``, ``feature_stages``, ``backbone_weights``,
            ``backbone_sha256`` and ``seed``.
        device: where the backbone runs.
    """

    def __init__(self, config: Any, device: torch.device) -> None:
        super().__init__()
        self.backbone = load_backbone(
            config.features,
            tuple(config.feature_stages),
            config.backbone_weights,
            seed=config.seed,
            device=device,
            expected_sha256=config.backbone_sha256 or None,
        )
        self.dims = sum(self.backbone.channels)

    def resolved(self, config: Any) -> Any:
        """``config`` with the digest of the backbone it was built with."""
        return dataclasses.replace(config, backbone_sha256=self.backbone.sha256)

    def standardiser(self) -> nn.Module:
        return BatchNorm(self.dims)

    def pooled(self, images: Tensor) -> Tensor:
        """``[B, D]``: the features of images in [0, 1], each stage averaged over its map."""
        return torch.cat([f.mean(dim=(2, 3)) for f in self.backbone(images)], dim=1)


def check_feature_data(data: Any) -> None:
    """A CNN needs more than digits' 8 pixels: each stage halves the map."""
    if min(data.height, data.width) < 32:
        raise UserError(
            f"--features needs images of at least 32x32 pixels, not {data.height}x{data.width}; "
            "give --image-size 224 (or more) and --channels 3"
        )
