"""The public API: everything a third-party family, or a script using gentool, may import.

Names that need torch (``Model``, ``DensityModel``, ...) are imported on first access, so a
plugin's registration module can import this module without slowing CLI start-up.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gentool import __version__, hookimpl
from gentool.config import DensityConfig, Schedule, TrainConfig, option
from gentool.data.base import (
    DataInfo,
    DataOptions,
    DatasetEntry,
    DataSource,
    Direction,
    Preprocessing,
    has_masks,
    parse_direction,
)
from gentool.errors import UserError
from gentool.family import DataKind, FamilySpec

if TYPE_CHECKING:
    import torch

    from gentool.backbones import BACKBONES
    from gentool.backbones.network import Backbone
    from gentool.backbones.weights import load_backbone
    from gentool.data.images import resize_image, to_channels
    from gentool.density import DensityModel, LogitTransform
    from gentool.localizing import heat_colours
    from gentool.metrics import (
        aupro,
        f1_max,
        fid_kid_metrics,
        l1_error,
        pixel_auroc,
        psnr,
        ssim,
        threshold_from_normal,
    )
    from gentool.model import Model
    from gentool.progress import stderr_console
    from gentool.runtime import forked_rng, resolve_device, seed_everything, to_device

__all__ = [
    "BACKBONES",
    "Backbone",
    "DataInfo",
    "DataKind",
    "DataOptions",
    "DataSource",
    "DatasetEntry",
    "DensityConfig",
    "DensityModel",
    "Direction",
    "FamilySpec",
    "LogitTransform",
    "Model",
    "Preprocessing",
    "Schedule",
    "TrainConfig",
    "UserError",
    "__version__",
    "aupro",
    "f1_max",
    "fid_kid_metrics",
    "forked_rng",
    "has_masks",
    "heat_colours",
    "hookimpl",
    "l1_error",
    "load_backbone",
    "load_model",
    "option",
    "pixel_auroc",
    "parse_direction",
    "psnr",
    "resize_image",
    "resolve_device",
    "seed_everything",
    "ssim",
    "stderr_console",
    "threshold_from_normal",
    "to_channels",
    "to_device",
]

_LAZY = {
    "Model": "gentool.model",
    "DensityModel": "gentool.density",
    "LogitTransform": "gentool.density",
    # Runtime helpers a family's model uses: devices, seeding, a side RNG stream.
    "forked_rng": "gentool.runtime",
    "resolve_device": "gentool.runtime",
    "seed_everything": "gentool.runtime",
    "to_device": "gentool.runtime",
    # Image helpers: channel conversion (grey <-> RGB, ITU-R 601 luma) and antialiased resizing.
    "to_channels": "gentool.data.images",
    "resize_image": "gentool.data.images",
    # Frozen pretrained CNN features (torchvision ResNets), their weights checked by digest.
    "BACKBONES": "gentool.backbones",
    "Backbone": "gentool.backbones.network",
    "load_backbone": "gentool.backbones.weights",
    # Heat maps of anomaly scores over images (matplotlib's jet), as `score --maps` draws them.
    "heat_colours": "gentool.localizing",
    # Messages and progress go to stderr; stdout carries results.
    "stderr_console": "gentool.progress",
    # Metrics a family reports when scoring: per-image fidelity to a target, and FID/KID
    # between real and generated sets (Inception-v3 weights only from the hub cache).
    "l1_error": "gentool.metrics",
    "psnr": "gentool.metrics",
    "ssim": "gentool.metrics",
    "fid_kid_metrics": "gentool.metrics",
    # Anomaly localisation: pixel AUROC, AUPRO, F1-max, and a threshold from normal images.
    "pixel_auroc": "gentool.metrics",
    "aupro": "gentool.metrics",
    "f1_max": "gentool.metrics",
    "threshold_from_normal": "gentool.metrics",
}


def load_model(
    family: FamilySpec | str | None,
    checkpoint: str | Path,
    device: torch.device | str = "auto",
) -> Model:
    """The trained model in a run folder or ``.safetensors`` file, in eval mode.

    ``family`` is a family's name (``"maf"``), its spec, or None for whatever family wrote
    the file; ``device`` is ``"auto"`` (CUDA when there is a GPU), ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"``, as ``--device`` takes it. Every problem with the file, and a CUDA device
    this machine lacks, is a :class:`UserError` with a one-line message.

    Example:
        >>> load_model("maf", "no/such/run")
        Traceback (most recent call last):
        ...
        gentool.errors.UserError: --checkpoint: no such file or run folder: no/such/run
    """
    from gentool.loading import load_model as load
    from gentool.runtime import resolve_device

    return load(family, checkpoint, resolve_device(str(device)))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gentool.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
