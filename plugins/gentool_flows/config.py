"""Hyperparameters of the flow families (light: no torch import, the CLI reads them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gentool.api import BACKBONES, DensityConfig, option

__all__ = ["IAFConfig", "MADEConfig", "MAFConfig"]

ORDERS = ("natural", "random")
ACTIVATIONS = ("relu", "elu", "tanh")
SCALES = ("exp", "softplus")  # gentool_flows.autoregressive.SCALES, without importing torch


# One definition per option, shared by the three families (each dataclass lists its own
# fields so that `gentool info` shows them in a sensible order).
def _num_layers() -> Any:
    return option(5, "MADE layers in the flow (MAF paper: 5 or 10)", minimum=1)


def _hidden_features(default: tuple[int, ...]) -> Any:
    return option(
        default, "units per hidden layer of each MADE (>= pixels - 1 covers every pixel)", minimum=1
    )


def _order() -> Any:
    return option(
        "natural",
        "pixel order: natural (reversed between layers) or random per layer",
        choices=ORDERS,
    )


def _activation() -> Any:
    return option("relu", "nonlinearity of the MADE hidden layers", choices=ACTIVATIONS)


def _log_scale_clamp() -> Any:
    return option(5.0, "clamp log s to [-c, c], for stable early training (0 = off)", minimum=0.0)


def _scale() -> Any:
    return option(
        "exp",
        "how a MADE output becomes the scale s: exp (MAF paper: log s, clamped) or softplus "
        "(s = softplus + 1e-3, identity at init; steadier on small data)",
        choices=SCALES,
    )


#: ``--features``: the pixels, or the pooled features of one of gentool's backbones.
FEATURES = ("pixels", *BACKBONES)
STAGES = ("layer1", "layer2", "layer3", "layer4")


def _features() -> Any:
    return option(
        "pixels",
        "what the flow models: the pixels, or an image's pooled features from a frozen CNN "
        "(an image-level anomaly detector on photographs; give --image-size 224 --channels 3)",
        choices=FEATURES,
    )


def _feature_stages() -> Any:
    return option(
        ("layer2", "layer3"),
        "--features: the backbone stages averaged over their maps and concatenated",
        choices=STAGES,
    )


def _backbone_weights() -> Any:
    return option(
        "imagenet",
        "--features: imagenet (torchvision's weights, downloaded once), none (seeded random "
        "weights, no download) or a .pth file",
    )


def _backbone_sha256() -> Any:
    return option(
        "",
        "--features: SHA-256 the backbone's weights must have ('' = the weights found; a "
        "trained model stores its own)",
    )


def _absolute(weights: str) -> str:
    """A weights file stored absolute, so the run can be scored from any folder."""
    if weights in ("imagenet", "none", ""):
        return weights
    return str(Path(weights).expanduser().absolute())


def _cuda_graphs() -> Any:
    return option(
        False,
        "replay the sequential passes as CUDA graphs (CUDA only; faster, holds memory)",
        resumable=True,
    )


@dataclass
class MADEConfig(DensityConfig):
    """A single Gaussian MADE: one masked autoregressive layer, no batch norm."""

    hidden_features: tuple[int, ...] = _hidden_features((1024,))
    order: str = _order()
    activation: str = _activation()
    log_scale_clamp: float = _log_scale_clamp()
    scale: str = _scale()
    cuda_graphs: bool = _cuda_graphs()
    features: str = _features()
    feature_stages: tuple[str, ...] = _feature_stages()
    backbone_weights: str = _backbone_weights()
    backbone_sha256: str = _backbone_sha256()

    def __post_init__(self) -> None:
        self.backbone_weights = _absolute(self.backbone_weights)


@dataclass
class MAFConfig(DensityConfig):
    """Masked autoregressive flow (MAF paper on MNIST: 5 layers, 1024 hidden units each)."""

    num_layers: int = _num_layers()
    hidden_features: tuple[int, ...] = _hidden_features((1024,))
    batch_norm: bool = option(True, "batch normalisation between the MADE layers (MAF paper)")
    order: str = _order()
    activation: str = _activation()
    log_scale_clamp: float = _log_scale_clamp()
    scale: str = _scale()
    cuda_graphs: bool = _cuda_graphs()
    features: str = _features()
    feature_stages: tuple[str, ...] = _feature_stages()
    backbone_weights: str = _backbone_weights()
    backbone_sha256: str = _backbone_sha256()

    def __post_init__(self) -> None:
        self.backbone_weights = _absolute(self.backbone_weights)


@dataclass
class IAFConfig(DensityConfig):
    """Inverse autoregressive flow: MAF read the other way (no batch norm)."""

    num_layers: int = _num_layers()
    hidden_features: tuple[int, ...] = _hidden_features((1024,))
    order: str = _order()
    activation: str = _activation()
    log_scale_clamp: float = _log_scale_clamp()
    scale: str = _scale()
    cuda_graphs: bool = _cuda_graphs()
    # The objective, not the network: a run may continue with the teacher moved elsewhere.
    teacher: str = option(
        "",
        "a trained maf run (folder or .safetensors) to distil: minimise KL(IAF || MAF) on "
        "IAF samples ('' = maximum likelihood on the data)",
        resumable=True,
    )

    def __post_init__(self) -> None:
        # Stored absolute, so the run can be resumed or scored from any folder.
        if self.teacher:
            self.teacher = str(Path(self.teacher).expanduser().absolute())
