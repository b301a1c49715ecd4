"""The public API: everything a third-party family, or a script using gentool, may import.

Names that need torch (``Model``, ``DensityModel``, ...) are imported on first access, so a
plugin's registration module can import this module without slowing CLI start-up.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gentool import __version__, hookimpl
from gentool.config import DensityConfig, TrainConfig, option
from gentool.data.base import DataInfo, DataOptions, DatasetEntry, DataSource
from gentool.errors import UserError
from gentool.family import DataKind, FamilySpec

if TYPE_CHECKING:
    import torch

    from gentool.density import DensityModel, LogitTransform
    from gentool.model import Model

__all__ = [
    "DataInfo",
    "DataKind",
    "DataOptions",
    "DataSource",
    "DatasetEntry",
    "DensityConfig",
    "DensityModel",
    "FamilySpec",
    "LogitTransform",
    "Model",
    "TrainConfig",
    "UserError",
    "__version__",
    "hookimpl",
    "load_model",
    "option",
]

_LAZY = {
    "Model": "gentool.model",
    "DensityModel": "gentool.density",
    "LogitTransform": "gentool.density",
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
    from gentool.checkpoint import load_model as load
    from gentool.engine import resolve_device

    return load(family, checkpoint, resolve_device(str(device)))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gentool.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
