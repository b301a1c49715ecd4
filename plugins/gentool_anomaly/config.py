"""Hyperparameters of the feature-flow families (light: no torch; the CLI reads them at start)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gentool.api import BACKBONES, Schedule, TrainConfig, option

__all__ = ["BACKBONE_NAMES", "STAGES", "FastFlowConfig"]

BACKBONE_NAMES = tuple(BACKBONES)  # gentool.backbones' table needs no torch
STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclass
class FastFlowConfig(TrainConfig):
    """FastFlow's hyperparameters (Yu et al. 2021; anomalib's defaults: ResNet-18, 8 flow
    steps, hidden ratio 1, log-scales soft-clamped to 2, Adam at 1e-3 with decay 1e-5)."""

    epochs: int = option(100, "most passes over the normal images", resumable=True, minimum=1)
    batch_size: int = option(32, "images per training step", minimum=1)
    lr: float = option(1e-3, "learning rate (Adam)", above=0.0)
    weight_decay: float = option(1e-5, "L2 penalty on the flows' weights", minimum=0.0)
    backbone: str = option(
        "resnet18",
        "the frozen CNN whose feature maps the flows model (torchvision)",
        choices=BACKBONE_NAMES,
    )
    backbone_weights: str = option(
        "imagenet",
        "imagenet (torchvision's weights, downloaded once into torch's cache), none (a seeded "
        "random initialisation: a weaker baseline that needs no download), or a .pth file",
    )
    backbone_sha256: str = option(
        "",
        "SHA-256 the backbone's weights must have ('' = the weights found; a trained model "
        "stores its own, so scoring uses the very backbone it was trained on)",
    )
    stages: tuple[str, ...] = option(
        ("layer1", "layer2", "layer3"), "backbone stages to model, one flow each", choices=STAGES
    )
    flow_steps: int = option(8, "affine coupling steps of each stage's flow", minimum=1)
    hidden_ratio: float = option(
        1.0, "hidden channels of a coupling's subnet, per input channel", minimum=0.01
    )
    conv3x3_only: bool = option(
        False, "3x3 convolutions in every step (default: 3x3 and 1x1 alternately)"
    )
    clamp: float = option(2.0, "log-scales are squashed softly into [-c, c]", minimum=0.01)
    val_fraction: float = option(
        0.1,
        "share of the normal training images held out for early stopping and the threshold",
        minimum=0.0,
    )
    patience: int = option(
        20,
        "stop after N epochs without a better validation NLL (0 = never)",
        resumable=True,
        minimum=0,
    )
    image_score: str = option(
        "max",
        "an image's anomaly score: max (the map's maximum, FastFlow's: for local defects) or "
        "mean (the image's mean NLL: for anomalies of the whole image, such as another object)",
        choices=("max", "mean"),
    )
    threshold_quantile: float = option(
        0.99,
        "the anomaly threshold: this quantile of the held-out normal images' scores",
        minimum=0.0,
    )

    def __post_init__(self) -> None:
        # A weights file is stored absolute, so the run can be scored from any folder.
        if self.backbone_weights not in ("imagenet", "none", ""):
            self.backbone_weights = str(Path(self.backbone_weights).expanduser().absolute())

    def schedule(self) -> Schedule:
        return dataclasses.replace(
            super().schedule(), val_fraction=self.val_fraction, patience=self.patience
        )
