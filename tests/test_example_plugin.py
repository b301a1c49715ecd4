"""The third-party example, examples/gentool-realnvp, works as a plugin through the public API.

The CI collects only tests/, gentool/ and plugins/, so this file runs the example's own
tests and doctests too. The family is registered in-process, exactly as its entry point
would register it; tests/test_plugin_guide.py has the real ``pip install`` (``-m slow``).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from safetensors import safe_open

import gentool.api
import gentool.registry
from gentool import cli
from gentool.registry import PluginInfo, Registry
from gentool.testing import private_uses_in

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gentool-realnvp"
SRC = EXAMPLE / "src"
SMALL = "--layers 2 --hidden-features 16 --batch-size 50 --device cpu --quiet"  # train fast


def _import_example(name: str):
    """Import a module of the example package from its source tree (it is not installed).

    The package is loaded by file location, not by putting src/ on sys.path: a
    ``gentool_realnvp.egg-info`` left there by an earlier ``pip install -e`` would make its
    entry point visible to every later test in the session.
    """
    if "gentool_realnvp" not in sys.modules:
        folder = SRC / "gentool_realnvp"
        spec = importlib.util.spec_from_file_location(
            "gentool_realnvp", folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["gentool_realnvp"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(name)


def _example_version() -> str:
    return _import_example("gentool_realnvp").__version__


@pytest.fixture
def realnvp_registry(monkeypatch):
    """The built-in plugins plus the example, registered as its entry point would be."""
    monkeypatch.setenv("GENTOOL_LOAD_PLUGINS", "")  # built-ins only, even if it is installed
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that Rich tables do not elide names
    registry = Registry().load_entry_points()
    plugin = _import_example("gentool_realnvp.plugin")
    info = PluginInfo("realnvp", "gentool-realnvp", _example_version(), builtin=False)
    registry.add_plugin(plugin, info)
    assert info.error is None, info.error
    monkeypatch.setattr(gentool.registry, "_REGISTRY", registry)
    # cli.main adds a train sub-command per family; keep ours out of later tests.
    commands = list(cli.train_app.registered_commands)
    monkeypatch.setattr(cli.train_app, "registered_commands", commands)
    return registry


def _cli(capsys, command: str) -> str:
    """Run ``gentool COMMAND`` in-process; its stdout."""
    capsys.readouterr()
    code = cli.main(shlex.split(command))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


# -- the plugin through the CLI -------------------------------------------------------------------
def test_plugins_and_info_show_the_family(realnvp_registry, capsys):
    out = _cli(capsys, "plugins")
    assert "gentool-realnvp" in out and _example_version() in out and "realnvp" in out
    out = _cli(capsys, "info realnvp")
    assert "--coupling" in out and "affine|additive" in out and "plugin realnvp" in out


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_train_sample_score_bench_on_digits(realnvp_registry, capsys, tmp_path, coupling):
    run = tmp_path / "run"
    out = _cli(
        capsys, f"train realnvp --data digits --out {run} --epochs 1 --coupling {coupling} {SMALL}"
    )
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["family"] == "realnvp" and summary["epochs"] == 1
    with safe_open(run / "model.safetensors", "pt") as handle:
        meta = handle.metadata()
    assert meta["gentool.family"] == "realnvp"
    assert meta["gentool.plugin"] == "realnvp"
    assert meta["gentool.plugin_version"] == _example_version()
    assert json.loads(meta["gentool.config"])["coupling"] == coupling
    assert (run / "metrics.jsonl").is_file() and (run / "losses.png").is_file()
    assert (run / "samples" / "epoch_0001.png").is_file()

    grid = tmp_path / "grid.png"
    out = _cli(capsys, f"sample realnvp -c {run} -n 9 --out {grid} --device cpu")
    assert json.loads(out)["images"] == 9 and grid.is_file()

    out = _cli(capsys, f"score realnvp -c {run} --data digits --json --device cpu")
    scores = json.loads(out)
    assert scores["images"] == 360 and 0 < scores["mean_bits_per_dim"] < 10

    out = _cli(capsys, f"bench realnvp -c {run} --repeats 1 --sample-batch 8 --json --device cpu")
    assert set(json.loads(out)["ops"]) == {"train_step", "sample", "score"}


def test_anomaly_scoring_with_a_normal_class(realnvp_registry, capsys, tmp_path):
    run = tmp_path / "run"
    _cli(capsys, f"train realnvp --data digits --normal-class 0 --out {run} --epochs 1 {SMALL}")
    scores = json.loads(_cli(capsys, f"score realnvp -c {run} --data digits --json --device cpu"))
    assert scores["normal_class"] == "0"
    # One epoch on the 0s already ranks the other digits as outliers far above chance
    # (0.92 measured, seed 0).
    assert scores["auroc"] > 0.85


# -- the public API and nothing else --------------------------------------------------------------
def test_example_imports_only_the_public_api():
    assert len(list(SRC.rglob("*.py"))) >= 5
    assert private_uses_in(SRC) == {}


def test_every_public_name_resolves():
    for name in gentool.api.__all__:
        assert getattr(gentool.api, name) is not None


def test_registering_the_plugin_does_not_import_torch():
    probe = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); import gentool_realnvp.plugin; "
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- uninstalled, nothing of gentool mentions it --------------------------------------------------
def test_gentool_itself_never_names_the_example():
    for folder in ("gentool", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "realnvp" not in path.read_text(encoding="utf-8").lower(), path
    assert "realnvp" not in (ROOT / "pyproject.toml").read_text().lower()


def test_without_the_package_the_family_is_unknown(monkeypatch):
    try:
        metadata.distribution("gentool-realnvp")
    except metadata.PackageNotFoundError:
        pass
    else:
        pytest.skip("gentool-realnvp is installed in this environment")
    monkeypatch.delenv("GENTOOL_LOAD_PLUGINS", raising=False)
    registry = Registry().load_entry_points()
    assert "realnvp" not in registry.families and "realnvp" not in registry.plugins


# -- the example's own tests and doctests, which the CI would not collect otherwise ---------------
def _load_example_tests(name: str):
    _import_example("gentool_realnvp")
    spec = importlib.util.spec_from_file_location(
        f"gentool_realnvp_tests_{name}", EXAMPLE / "tests" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


for _module in (_load_example_tests("test_coupling"), _load_example_tests("test_model")):
    for _name in dir(_module):
        if _name.startswith("test_"):
            assert _name not in globals(), f"two tests named {_name}"
            globals()[_name] = getattr(_module, _name)


class TestExampleContract(_load_example_tests("test_contract").TestRealNVPContract):
    """The example's contract suite, with its family registered in-process as its entry
    point would register it."""

    @pytest.fixture(scope="class")
    @classmethod
    def family(cls):
        specs = []
        _import_example("gentool_realnvp.plugin").register_families(register=specs.append)
        (spec,) = specs
        return spec.with_plugin("realnvp", _example_version())


def test_example_doctests():
    result = doctest.testmod(_import_example("gentool_realnvp.coupling"))
    assert result.attempted > 0 and result.failed == 0
