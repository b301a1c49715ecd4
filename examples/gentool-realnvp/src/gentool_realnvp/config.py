"""The hyperparameters of the ``realnvp`` family (no torch: the CLI reads this at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from gentool.api import DensityConfig, option

__all__ = ["RealNVPConfig"]


@dataclass
class RealNVPConfig(DensityConfig):
    """RealNVP / NICE on flattened images; the schedule and logit transform come from
    :class:`gentool.api.DensityConfig`, shared with ``maf``."""

    coupling: str = option(
        "affine",
        "affine (RealNVP: scale and shift) or additive (NICE: shift only, volume-preserving)",
        choices=("affine", "additive"),
    )
    layers: int = option(8, "coupling layers; the mask flips from one to the next", minimum=2)
    hidden_features: tuple[int, ...] = option(
        (256, 256), "units per hidden layer of each coupling's network", minimum=1
    )
    mask: str = option(
        "checkerboard",
        "which pixels a coupling keeps: checkerboard (alternate pixels) or halves (top/bottom)",
        choices=("checkerboard", "halves"),
    )
    log_scale_bound: float = option(
        5.0, "affine: log-scales are squashed softly into [-B, B] (tanh) for stability", minimum=0.1
    )
