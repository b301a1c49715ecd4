"""The plugin system: entry points load one by one, broken plugins are isolated."""

import inspect
import sys
import textwrap
from importlib import metadata

import pytest

from gentool.errors import UserError
from gentool.registry import Registry, get_registry

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


def test_every_shared_train_option_is_a_reserved_name():
    """A parameter of a family's train command that is not one of its hyperparameters is a
    shared option, and a family may not take its name."""
    from gentool.config import RESERVED_NAMES, config_fields
    from gentool.train_command import train_command

    for name, spec in get_registry().families.items():
        own = {f.name for f in config_fields(spec.config)}
        params = {p.name for p in inspect.signature(train_command(spec)).parameters.values()}
        assert params - own <= RESERVED_NAMES, name


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


# A third-party plugin that claims a built-in family name and a built-in dataset name.
DUP = """
from dataclasses import dataclass
from gentool.api import DataKind, DatasetEntry, FamilySpec, TrainConfig, hookimpl

@dataclass
class Config(TrainConfig):
    pass

def _family(name):
    return FamilySpec(name, "a copy", Config, DataKind.IMAGES, {"sample"}, "nowhere:Nothing")

def _dataset(name):
    return DatasetEntry(name, DataKind.IMAGES, "a copy", "0 images", lambda options, root: None)

@hookimpl
def register_families(register):
    register(_family("maf"))
    register(_family("dupfam"))

@hookimpl
def register_datasets(register):
    register(_dataset("digits"))
    register(_dataset("dupdata"))
"""


@pytest.fixture
def dup_plugin(tmp_path, monkeypatch):
    """The real built-in entry points plus ``dup``, which sorts before ``flows``."""
    builtins = [
        ep
        for ep in metadata.entry_points(group="gentool")
        if ep.dist is not None and ep.dist.name == "gentool"
    ]
    assert {ep.name for ep in builtins} >= {"datasets", "flows", "translation"}
    (tmp_path / "dup_plugin.py").write_text(DUP)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [metadata.EntryPoint("dup", "dup_plugin", "gentool"), *builtins]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps)
    monkeypatch.delenv("GENTOOL_LOAD_PLUGINS", raising=False)
    yield
    sys.modules.pop("dup_plugin", None)


def test_builtin_names_are_reserved(dup_plugin):
    registry = Registry().load_entry_points()
    builtins = ["anomaly", "datasets", "flows", "translation"]
    assert list(registry.plugins)[:4] == builtins  # built-ins first
    for name in builtins:
        assert registry.plugins[name].error is None, registry.plugins[name].error
    assert {"made", "maf", "iaf"} <= set(registry.plugins["flows"].families)
    assert registry.family("maf").plugin == "flows"
    assert registry.family("iaf").plugin == "flows"
    assert registry.datasets["digits"].plugin == "datasets"
    # Only the clashing names are rejected; the rest of the same hooks still registers.
    dup = registry.plugins["dup"]
    assert dup.families == ["dupfam"] and dup.datasets == ["dupdata"]
    assert registry.family("dupfam").plugin == "dup"
    assert "family 'maf' is already registered by built-in plugin 'flows'" in dup.error
    assert "dataset 'digits' is already registered by built-in plugin 'datasets'" in dup.error


def test_cli_shows_a_rejected_name_against_its_plugin(dup_plugin, monkeypatch, capsys):
    import gentool.registry
    from gentool import cli

    monkeypatch.setattr(gentool.registry, "_REGISTRY", Registry().load_entry_points())
    monkeypatch.setattr(
        cli.train_app, "registered_commands", list(cli.train_app.registered_commands)
    )
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "dup (?): register_families: family 'maf' is already registered" in out
    assert "flows (gentool)" not in out  # the built-in has no error line
    assert cli.main(["info", "maf"]) == 0
    assert "plugin flows" in capsys.readouterr().out
    assert cli.main(["info", "iaf"]) == 0
    assert "plugin flows" in capsys.readouterr().out


def test_a_rejected_item_does_not_stop_the_hook(fake_plugins, monkeypatch):
    monkeypatch.delenv("GENTOOL_LOAD_PLUGINS", raising=False)
    registry = Registry().load_entry_points()
    # good_plugin's only family clashes: nothing of it registers, and it says why.
    assert registry.plugins["good_plugin"].families == []
    assert registry.plugins["bad_config"].error.startswith("register_families: family 'badtoy'")


def test_a_plugin_that_exits_on_import_is_isolated(tmp_path, monkeypatch):
    """A script registered by mistake runs its argparse and calls sys.exit() when imported;
    every gentool command used to end there, silently."""
    (tmp_path / "exits_plugin.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "fine_plugin.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [metadata.EntryPoint(n, n, "gentool") for n in ("exits_plugin", "fine_plugin")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: eps)
    try:
        registry = Registry().load_entry_points()
    finally:
        for name in ("exits_plugin", "fine_plugin"):
            sys.modules.pop(name, None)
    assert registry.plugins["exits_plugin"].error == "import failed: SystemExit: 3"
    assert "toy" in registry.families
