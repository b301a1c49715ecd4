"""What a model family is: its name, capabilities, hyperparameters and the data it eats.

A plugin registers a :class:`FamilySpec`. The spec is light (no torch import), so
``gentool plugins`` and ``gentool info`` stay fast; the model class it names is imported
only when a command needs it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from gentool.errors import UserError

__all__ = ["CAPABILITIES", "DataKind", "FamilySpec"]

#: Everything a family may be able to do; ``bench`` works for every family.
CAPABILITIES = ("train", "sample", "score", "translate")


class DataKind(StrEnum):
    """The shape of the data a family trains on."""

    IMAGES = "images"  # single images, with optional class/anomaly labels (flows)
    UNPAIRED = "unpaired"  # two unaligned sets A and B (CycleGAN)
    PAIRED = "paired"  # aligned A -> B pairs (Pix2Pix)


@dataclass(frozen=True)
class FamilySpec:
    """A model family as registered by a plugin.

    Arguments:
        name: the family's CLI name, e.g. ``"maf"``.
        summary: one line for ``gentool plugins``.
        config: the hyperparameter dataclass (a subclass of
            :class:`gentool.config.TrainConfig` built with :func:`gentool.config.option`).
        data_kind: which data it trains on.
        capabilities: a subset of :data:`CAPABILITIES`.
        model: the :class:`gentool.model.Model` subclass, or ``"module:Class"`` to import it
            lazily (keeps torch out of CLI start-up).
        plugin, plugin_version: filled in by the registry from the entry point's package.
    """

    name: str
    summary: str
    config: type
    data_kind: DataKind
    capabilities: frozenset[str]
    model: Any
    plugin: str = ""
    plugin_version: str = ""
    details: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        unknown = self.capabilities - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown capabilities {sorted(unknown)}")
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"bad family name {self.name!r}")

    def with_plugin(self, plugin: str, version: str) -> FamilySpec:
        return replace(self, plugin=plugin, plugin_version=version)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def load_model_class(self) -> type:
        """Import and return the model class (this is where torch gets imported)."""
        if not isinstance(self.model, str):
            return self.model
        module_name, _, attr = self.model.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise UserError(
                f"family {self.name!r} (plugin {self.plugin}) failed to load {self.model}: {err}"
            ) from err
