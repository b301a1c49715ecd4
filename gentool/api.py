"""The public API: everything a third-party family, or a script using gentool, may import.

Names that need torch (``Model``, ``DensityModel``, ...) are imported on first access, so a
plugin's registration module can import this module without slowing CLI start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gentool import __version__, hookimpl
from gentool.config import DensityConfig, TrainConfig, option
from gentool.data.base import DataInfo, DataOptions, DatasetEntry, DataSource
from gentool.errors import UserError
from gentool.family import DataKind, FamilySpec

if TYPE_CHECKING:
    from gentool.checkpoint import load_model
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
    "load_model": "gentool.checkpoint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gentool.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
