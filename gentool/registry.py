"""Finds plugins through the ``gentool`` entry-point group and collects their families.

Entry points load one at a time: a plugin whose import or registration raises is recorded
with its error (``gentool plugins`` shows it) and every other plugin still works. Built-in
families ship in the ``gentool`` distribution and load through the same group, first, so
their names are reserved: a family or dataset whose name is already taken is rejected on its
own (recorded against the plugin that tried to take it) while the rest of that plugin's hook
still registers. ``GENTOOL_LOAD_PLUGINS`` (comma-separated entry-point or package names)
chooses which third-party plugins load; set but empty, none do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

import pluggy

from gentool import hookspecs
from gentool.config import config_fields
from gentool.data.base import DatasetEntry
from gentool.errors import UserError
from gentool.family import FamilySpec

__all__ = ["PluginInfo", "Registry", "get_registry"]

BUILTIN_DISTRIBUTION = "gentool"


@dataclass
class PluginInfo:
    """One plugin as ``gentool plugins`` shows it."""

    name: str
    package: str
    version: str
    builtin: bool
    families: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    error: str | None = None

    def add_error(self, message: str) -> None:
        """Record a problem; a plugin may have several (one per rejected name)."""
        self.error = message if self.error is None else f"{self.error}; {message}"


class Registry:
    """The loaded plugins, families and named datasets."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("gentool")
        self.manager.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.families: dict[str, FamilySpec] = {}
        self.datasets: dict[str, DatasetEntry] = {}

    # -- loading ------------------------------------------------------------------------------
    def load_entry_points(self) -> Registry:
        wanted = _wanted_plugins()
        # Built-ins first, so that no third-party plugin can take a name gentool ships;
        # then third-party plugins in name order (the first to claim a name keeps it).
        entry_points = sorted(
            metadata.entry_points(group="gentool"), key=lambda e: (not _is_builtin(e), e.name)
        )
        for ep in entry_points:
            package = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            builtin = _is_builtin(ep)
            if not builtin and wanted is not None and not ({ep.name, _normal(package)} & wanted):
                continue
            info = PluginInfo(ep.name, package, version, builtin)
            if ep.name in self.plugins:
                info.error = f"another plugin is already named {ep.name!r}"
                self.plugins[f"{ep.name} ({package})"] = info
                continue
            self.plugins[ep.name] = info
            try:
                module = ep.load()
            # A broken plugin must not break the others, not even one that exits on import
            # (a script registered by mistake runs its argparse and sys.exit()).
            except (Exception, SystemExit) as err:
                info.error = f"import failed: {type(err).__name__}: {err}"
                continue
            self.add_plugin(module, info)
        return self

    def add_plugin(self, plugin: Any, info: PluginInfo) -> None:
        """Register one plugin object (a module with hookimpls) and run its hooks."""
        self.plugins.setdefault(info.name, info)
        try:
            self.manager.register(plugin, name=info.name)
        except Exception as err:
            info.add_error(f"registration failed: {type(err).__name__}: {err}")
            return
        for hook_name, target in (
            ("register_families", self._add_family),
            ("register_datasets", self._add_dataset),
        ):
            hook = getattr(self.manager.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin_name != info.name:
                    continue
                try:
                    impl.function(register=_isolated(target, hook_name, info))
                except (Exception, SystemExit) as err:
                    info.add_error(f"{hook_name} failed: {type(err).__name__}: {err}")

    def _add_family(self, spec: FamilySpec, info: PluginInfo) -> None:
        if not isinstance(spec, FamilySpec):
            raise TypeError(f"expected a FamilySpec, got {type(spec).__name__}")
        if spec.name in self.families:
            owner = self.families[spec.name].plugin
            raise ValueError(f"family {spec.name!r} is already registered by {self._owner(owner)}")
        try:
            config_fields(spec.config)  # a config the CLI cannot turn into options fails here
        except TypeError as err:
            raise TypeError(f"family {spec.name!r}: {err}") from None
        self.families[spec.name] = spec.with_plugin(info.name, info.version)
        info.families.append(spec.name)

    def _add_dataset(self, entry: DatasetEntry, info: PluginInfo) -> None:
        if not isinstance(entry, DatasetEntry):
            raise TypeError(f"expected a DatasetEntry, got {type(entry).__name__}")
        if entry.name in self.datasets:
            owner = self.datasets[entry.name].plugin
            raise ValueError(
                f"dataset {entry.name!r} is already registered by {self._owner(owner)}"
            )
        self.datasets[entry.name] = replace(entry, plugin=info.name)
        info.datasets.append(entry.name)

    def _owner(self, plugin: str) -> str:
        info = self.plugins.get(plugin)
        if info is not None and info.builtin:
            return f"built-in plugin {plugin!r} (built-in names are reserved)"
        return f"plugin {plugin!r}"

    # -- lookup -------------------------------------------------------------------------------
    def family(self, name: str, capability: str | None = None) -> FamilySpec:
        """The family called ``name``, checked to have ``capability``; else a UserError."""
        spec = self.families.get(name)
        if spec is None:
            known = ", ".join(sorted(self.families)) or "none installed"
            hint = ""
            broken = [p.name for p in self.plugins.values() if p.error]
            if broken:
                hint = f" (plugins with load errors: {', '.join(broken)}; see `gentool plugins`)"
            raise UserError(f"unknown family {name!r}; known families: {known}{hint}")
        if capability and not spec.can(capability):
            able = sorted(n for n, s in self.families.items() if s.can(capability))
            raise UserError(
                f"family {name!r} cannot {capability}; families that can: {', '.join(able)}"
            )
        return spec


def _isolated(add: Any, hook_name: str, info: PluginInfo) -> Any:
    """The ``register`` callback of one hook: a bad item (a name already taken, a config the
    CLI cannot use) is rejected on its own, and the plugin's other items still register."""

    def register(item: Any) -> None:
        try:
            add(item, info)
        except (TypeError, ValueError) as err:  # our checks: the message says it all
            info.add_error(f"{hook_name}: {err}")
        except Exception as err:
            info.add_error(f"{hook_name}: {type(err).__name__}: {err}")

    return register


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def _is_builtin(ep: metadata.EntryPoint) -> bool:
    """An entry point of gentool's own distribution (the built-in families and datasets)."""
    return ep.dist is not None and _normal(ep.dist.name) == BUILTIN_DISTRIBUTION


def _wanted_plugins() -> set[str] | None:
    raw = os.environ.get("GENTOOL_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_normal(p.strip()) for p in raw.split(",") if p.strip()} | {
        p.strip() for p in raw.split(",") if p.strip()
    }


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry().load_entry_points()
    return _REGISTRY
