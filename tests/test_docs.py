"""The docs stay true: every CLI option is documented, every built-in family is in README."""

import dataclasses
import re
from pathlib import Path

import pytest
import typer

from gentool import cli
from gentool.options import TrainOptions
from gentool.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def _long_options(command):
    return [o for p in command.params for o in getattr(p, "opts", []) if o.startswith("--")]


@pytest.mark.parametrize("name", ["sample", "score", "translate", "bench"])
def test_every_option_is_in_the_cli_reference(name):
    text = (ROOT / "docs" / "cli.md").read_text()
    command = typer.main.get_command(cli.app).commands[name]
    missing = [o for o in _long_options(command) if f"`{o}" not in text and o != "--help"]
    assert not missing, f"docs/cli.md lacks {name} options {missing}"


@pytest.mark.parametrize("family", sorted(Registry().load_entry_points().families))
def test_shared_train_options_are_in_the_cli_reference(family, monkeypatch):
    """The run and data options every family's train command shares (per data kind)."""
    monkeypatch.setenv("GENTOOL_LOAD_PLUGINS", "")
    text = (ROOT / "docs" / "cli.md").read_text()
    cli._register_train_commands()
    command = typer.main.get_command(cli.app).commands["train"].commands[family]
    shared = {f.name for f in dataclasses.fields(TrainOptions)}
    flags = [o for p in command.params if p.name in shared for o in p.opts if o.startswith("--")]
    assert "--data" in flags
    missing = [o for o in flags if f"`{o}" not in text]
    assert not missing, f"docs/cli.md lacks {family} train options {missing}"


def test_readme_names_every_builtin_family(monkeypatch):
    monkeypatch.setenv("GENTOOL_LOAD_PLUGINS", "")
    readme = (ROOT / "README.md").read_text()
    families = Registry().load_entry_points().families
    assert {"made", "maf", "iaf", "cyclegan", "pix2pix"} <= set(families)
    for name in families:
        assert f"`{name}`" in readme, name


#: The page of each built-in plugin's families.
PAGES = {"flows": "flows.md", "translation": "translation.md", "anomaly": "anomaly.md"}
BUILTINS = {
    name: spec
    for name, spec in Registry().load_entry_points().families.items()
    if spec.plugin in PAGES
}


@pytest.mark.parametrize("family", sorted(BUILTINS))
def test_every_family_option_is_documented(family):
    """A built-in family's hyperparameters appear in its page or in the shared CLI reference."""
    from gentool.config import config_fields

    spec = BUILTINS[family]
    page = PAGES[spec.plugin]
    text = (ROOT / "docs" / page).read_text() + (ROOT / "docs" / "cli.md").read_text()
    flags = ["--" + f.name.replace("_", "-") for f in config_fields(spec.config)]
    missing = [flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", text)]
    assert not missing, f"docs/{page} lacks {family} options {missing}"
