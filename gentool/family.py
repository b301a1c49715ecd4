"""What a model family is: its name, capabilities, hyperparameters and the data it eats.

A plugin registers a :class:`FamilySpec`. The spec is light (no torch import), so
``gentool plugins`` and ``gentool info`` stay fast; the model class it names is imported
only when a command needs it.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field, replace
from typing import Any

from gentool.config import TrainConfig, build_config, config_fields
from gentool.data.base import DataKind  # with the data contract: no import circle
from gentool.errors import UserError

__all__ = ["CAPABILITIES", "DataKind", "FamilySpec"]

#: The data options a family may give defaults for (:attr:`FamilySpec.data_defaults`).
DATA_DEFAULTS = frozenset({"image_size", "channels", "load_size"})

#: Everything a family may be able to do; ``bench`` works for every family.
CAPABILITIES = ("train", "sample", "score", "translate")

#: The model methods each capability promises (the base class's raise NotImplementedError).
_METHODS = {
    "train": ("configure_training", "train_step"),
    "sample": ("sample",),
    "score": ("score_batch",),
    "translate": ("translate",),
}


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
        details: free-form notes about the family (``"paper"``: a link).
        test_config: hyperparameters of a small model that trains in seconds, for the
            family contract suite (:class:`gentool.testing.FamilyContract`); the family's
            defaults when empty.
        data_defaults: data options the family trains with when the user gives none
            (``{"image_size": 256, "channels": 3}`` for a CNN backbone); any of
            ``image_size``, ``channels``, ``load_size``.
        test_data: the dataset and data options the contract suite trains on, when the
            default of the data kind does not suit the family (digits are 8 pixels wide).
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
    test_config: dict[str, Any] = field(default_factory=dict)
    data_defaults: dict[str, Any] = field(default_factory=dict)
    test_data: tuple[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        unknown = self.capabilities - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown capabilities {sorted(unknown)}")
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"bad family name {self.name!r}")
        _check_config(self.name, self.config, self.test_config)
        unknown = set(self.data_defaults) - DATA_DEFAULTS
        if unknown:
            raise ValueError(
                f"family {self.name!r}: data_defaults takes {', '.join(sorted(DATA_DEFAULTS))}, "
                f"not {', '.join(sorted(unknown))}"
            )
        if isinstance(self.model, str) and not all(self.model.partition(":")[::2]):
            raise ValueError(
                f"family {self.name!r}: model {self.model!r} is not a 'module:Class' string"
            )

    def with_plugin(self, plugin: str, version: str) -> FamilySpec:
        return replace(self, plugin=plugin, plugin_version=version)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def load_model_class(self) -> type:
        """Import and return the model class (this is where torch gets imported)."""
        if isinstance(self.model, str):
            module_name, _, attr = self.model.partition(":")
            try:
                model_class = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as err:
                raise UserError(f"{self._who()} failed to load {self.model}: {err}") from err
        else:
            model_class = self.model
        from gentool.model import Model

        if not (isinstance(model_class, type) and issubclass(model_class, Model)):
            raise UserError(f"{self._who()}: model {model_class!r} is not a gentool.api.Model")
        missing = [
            method
            for capability in sorted(self.capabilities)
            for method in _METHODS[capability]
            if getattr(model_class, method) is getattr(Model, method)
        ]
        if missing:
            raise UserError(
                f"{self._who()}: {model_class.__name__} lacks {', '.join(missing)}, which its "
                f"capabilities {', '.join(sorted(self.capabilities))} promise"
            )
        return model_class

    def _who(self) -> str:
        return f"family {self.name!r} (plugin {self.plugin or '?'})"


def _check_config(name: str, config: Any, test_config: dict[str, Any]) -> None:
    """Catch the config mistakes that would otherwise surface as a traceback in ``train``."""
    if not (isinstance(config, type) and issubclass(config, TrainConfig)):
        raise TypeError(
            f"family {name!r}: config must be a dataclass class subclassing "
            f"gentool.api.TrainConfig, not {config!r}"
        )
    stray = [key for key, value in vars(config).items() if isinstance(value, dataclasses.Field)]
    if stray:
        raise TypeError(
            f"family {name!r}: {config.__name__} needs the @dataclass decorator "
            f"(without it, these fields are not options: {', '.join(stray)})"
        )
    try:
        fields = config_fields(config)
    except TypeError:
        return  # the registry rejects this config with the reason, on its own
    for f in fields:
        if f.default is dataclasses.MISSING:
            raise TypeError(f"family {name!r}: {config.__name__}.{f.name} has no default")
        try:
            f.parse(f.default)
        except UserError as err:
            raise TypeError(
                f"family {name!r}: {config.__name__}.{f.name}: bad default ({err})"
            ) from None
    try:
        build_config(config, test_config)
    except UserError as err:
        raise TypeError(f"family {name!r}: test_config: {err}") from None
