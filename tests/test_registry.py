"""The plugin system: entry points load one by one, broken plugins are isolated."""

import sys
import textwrap
from importlib import metadata

import pytest

from gentool.errors import UserError
from gentool.registry import Registry

GOOD = """
from dataclasses import dataclass
from gentool.api import DataKind, FamilySpec, TrainConfig, hookimpl

@dataclass
class Config(TrainConfig):
    pass

@hookimpl
def register_families(register):
    register(FamilySpec("toy", "a toy family", Config, DataKind.IMAGES, {"train", "sample"},
                        "nowhere:Nothing"))
"""
BROKEN_IMPORT = "raise RuntimeError('boom at import')\n"
BROKEN_HOOK = """
from gentool.api import hookimpl

@hookimpl
def register_families(register):
    raise ValueError("boom in hook")
"""
CLASH = GOOD.replace('"a toy family"', '"a second toy"')
# A hyperparameter named like a shared train option would break the CLI for everyone.
BAD_CONFIG = GOOD.replace("    pass", "    device: str = 'cpu'").replace('"toy"', '"badtoy"')


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    modules = {
        "good_plugin": GOOD,
        "broken_import": BROKEN_IMPORT,
        "broken_hook": BROKEN_HOOK,
        "clash_plugin": CLASH,
        "bad_config": BAD_CONFIG,
    }
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [metadata.EntryPoint(name, name, "gentool") for name in modules]

    def entry_points(group):
        assert group == "gentool"
        return eps

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    yield
    for name in modules:
        sys.modules.pop(name, None)


def test_broken_plugins_are_isolated(fake_plugins, monkeypatch):
    monkeypatch.delenv("GENTOOL_LOAD_PLUGINS", raising=False)
    registry = Registry().load_entry_points()
    assert "toy" in registry.families
    errors = {name: info.error for name, info in registry.plugins.items()}
    assert "boom at import" in errors["broken_import"]
    assert "boom in hook" in errors["broken_hook"]
    # Entry points load in name order: the first plugin to claim "toy" keeps it.
    assert registry.families["toy"].plugin == "clash_plugin"
    assert errors["clash_plugin"] is None
    assert "already registered by plugin 'clash_plugin'" in errors["good_plugin"]
    assert "taken by a shared CLI option" in errors["bad_config"]
    assert "badtoy" not in registry.families


def test_cli_options_are_reserved_names():
    from gentool.cli import _DATA_PARAMS
    from gentool.config import RESERVED_NAMES

    assert {name for name, _, _ in _DATA_PARAMS} <= RESERVED_NAMES


def test_load_plugins_env_selects(fake_plugins, monkeypatch):
    monkeypatch.setenv("GENTOOL_LOAD_PLUGINS", "good_plugin")
    registry = Registry().load_entry_points()
    assert set(registry.plugins) == {"good_plugin"}
    monkeypatch.setenv("GENTOOL_LOAD_PLUGINS", "")
    assert Registry().load_entry_points().plugins == {}


def test_unknown_family_and_capability(fake_plugins):
    registry = Registry().load_entry_points()
    with pytest.raises(UserError, match="unknown family 'nope'; known families: toy"):
        registry.family("nope")
    with pytest.raises(UserError, match="family 'toy' cannot translate"):
        registry.family("toy", "translate")
    spec = registry.family("toy", "sample")
    with pytest.raises(UserError, match="failed to load nowhere:Nothing"):
        spec.load_model_class()
