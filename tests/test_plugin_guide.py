"""docs/plugins.md is true: its excerpts match the example, its dataset plugin runs, its
commands parse. ``-m slow`` pip-installs both of its packages into a fresh venv."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import gentool.commands
import gentool.registry
from gentool import cli
from gentool.api import DataOptions, UserError
from gentool.options import TrainOptions
from gentool.registry import PluginInfo, Registry

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
EXAMPLE = ROOT / "examples" / "gentool-realnvp"
SMALL = "--layers 2 --hidden-features 16 --batch-size 50 --device cpu --quiet"  # train fast
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def guide_blocks() -> list[tuple[str, str | None, str]]:
    """``(language, file, code)`` of every fenced block; ``file`` from a first ``# path`` line."""
    blocks = []
    for language, code in FENCE.findall(GUIDE.read_text(encoding="utf-8")):
        first, _, rest = code.partition("\n")
        marker = re.fullmatch(r"# ([\w./-]+\.(?:py|toml))", first.strip())
        blocks.append((language, marker.group(1), rest) if marker else (language, None, code))
    return blocks


def _files(prefix: str) -> list[tuple[str, str]]:
    return [(f, code) for _, f, code in guide_blocks() if f and f.startswith(prefix)]


def write_bars_package(folder: Path) -> Path:
    """The guide's dataset-only plugin, written out as the package it describes."""
    files = _files("gentool-bars/")
    assert {f for f, _ in files} == {"gentool-bars/pyproject.toml", "gentool-bars/gentool_bars.py"}
    for name, code in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(code, encoding="utf-8")
    return folder / "gentool-bars"


def _plugin(path: Path, module: str):
    """Import ``module`` (a package or a single file) from ``path`` without touching sys.path,
    which would also expose any stray ``*.egg-info`` there to later tests' entry points."""
    if module not in sys.modules:
        folder = path / module
        if folder.is_dir():
            spec = importlib.util.spec_from_file_location(
                module, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
        else:
            spec = importlib.util.spec_from_file_location(module, path / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[module] = loaded
        spec.loader.exec_module(loaded)
    return sys.modules[module]


@pytest.fixture(scope="module")
def bars_folder(tmp_path_factory) -> Path:
    return write_bars_package(tmp_path_factory.mktemp("guide"))


@pytest.fixture
def guide_registry(bars_folder, monkeypatch):
    """Built-ins, the example family and the guide's bars dataset, as if pip-installed."""
    monkeypatch.setenv("GENTOOL_LOAD_PLUGINS", "")
    monkeypatch.setenv("COLUMNS", "200")
    registry = Registry().load_entry_points()
    version = _plugin(EXAMPLE / "src", "gentool_realnvp").__version__
    realnvp = importlib.import_module("gentool_realnvp.plugin")
    bars = _plugin(bars_folder, "gentool_bars")
    for module, info in (
        (realnvp, PluginInfo("realnvp", "gentool-realnvp", version, builtin=False)),
        (bars, PluginInfo("bars", "gentool-bars", "0.1.0", builtin=False)),
    ):
        registry.add_plugin(module, info)
        assert info.error is None, info.error
    monkeypatch.setattr(gentool.registry, "_REGISTRY", registry)
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


# -- excerpts of the example are verbatim ---------------------------------------------------------
CUT = re.compile(r"^[ \t]*(?:# )?\.\.\.[ \t]*$", re.MULTILINE)  # a `...` (TOML: `# ...`) line


def excerpt_parts(code: str) -> list[str]:
    """The parts of a quoted block between its ``...`` cut lines (the whole block if none)."""
    return [part.strip("\n") for part in CUT.split(code) if part.strip()]


def test_guide_excerpts_match_the_example_package():
    """A quoted file is shown whole, or its cuts are marked, so it can be copied as shown."""
    excerpts = _files("examples/gentool-realnvp/")
    assert len(excerpts) >= 7
    for name, code in excerpts:
        source = (ROOT / name).read_text(encoding="utf-8")
        if not CUT.search(code):
            assert code.strip() == source.strip(), (
                f"docs/plugins.md quotes part of {name} without marking the cuts with `...`"
            )
            continue
        position = 0
        for part in excerpt_parts(code):
            found = source.find(part, position)
            assert found >= 0, f"docs/plugins.md quotes {name}, which no longer says:\n{part}"
            position = found + len(part)


def test_guide_python_excerpts_compile():
    for language, name, code in guide_blocks():
        if language == "python":
            compile(code, f"docs/plugins.md: {name or 'snippet'}", "exec")


@pytest.mark.parametrize(
    ("code", "parts"),
    [
        ("a = 1\n", ["a = 1"]),
        ("...\nimport x\n...\n\nclass A:\n    ...\n    def f(self):\n        pass\n",
         ["import x", "class A:", "    def f(self):\n        pass"]),
        ("[a]\nb = 1\n# ...\n[c]\n", ["[a]\nb = 1", "[c]"]),
    ],
)  # fmt: skip
def test_excerpt_parts(code, parts):
    assert excerpt_parts(code) == parts


def test_guide_lists_the_public_api_and_the_reserved_options():
    import gentool.api

    text = GUIDE.read_text(encoding="utf-8")
    for name in gentool.api.__all__:
        assert f"`{name}`" in text, f"the guide does not document gentool.api.{name}"
    reserved = [f.name for f in dataclasses.fields(TrainOptions)]
    assert all(f"`{name}`" in text for name in reserved)
    from gentool.config import RESERVED_NAMES

    missing = sorted(name for name in RESERVED_NAMES if f"`{name}`" not in text)
    assert not missing, f"the guide does not say these field names are taken: {missing}"


def test_guide_lists_every_method_a_model_may_override():
    """Section 4.5's table is where a plugin author learns what the engine calls."""
    from gentool.model import Model

    text = GUIDE.read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(\w+)\(", text, re.MULTILINE))
    table |= set(re.findall(r"^\| `\w+\(.*?\)` / `(\w+)\(", text, re.MULTILINE))
    methods = {
        name
        for name, value in vars(Model).items()
        if callable(value) and not name.startswith("_") and name not in ("train", "eval")
    }
    assert methods - table == set(), "the guide's model table lacks these methods"


# -- the dataset-only plugin ----------------------------------------------------------------------
def test_bars_dataset(guide_registry, capsys):
    assert "bars" in _cli(capsys, "datasets")
    entry = guide_registry.datasets["bars"]
    source = entry.load(DataOptions(), entry.root())
    assert source.info.shape == (1, 8, 8) and source.info.levels == 2
    image, label = source.split("train")[0]
    assert image.shape == (1, 8, 8) and set(image.unique().tolist()) <= {0.0, 1.0}
    assert int(label) in (0, 1) and len(source.split("test")) == 128
    horizontal = entry.load(DataOptions(normal_class="horizontal", channels=3), entry.root())
    images = horizontal.split("train")[:][0]
    assert images.shape[1] == 3 and (images[:, :, :, :1] == images).all()  # rows are constant
    with pytest.raises(UserError, match="classes horizontal, vertical"):
        entry.load(DataOptions(normal_class="diagonal"), entry.root())
    with pytest.raises(UserError, match="no 'val' split"):
        source.split("val")


def test_train_on_bars_score_anomalies_and_read_the_metadata(
    guide_registry, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    train = "train realnvp --data bars --normal-class horizontal --epochs 1 --out runs/realnvp"
    _cli(capsys, f"{train} {SMALL}")
    scores = json.loads(_cli(capsys, "score realnvp -c runs/realnvp --data bars --json"))
    assert scores["normal_class"] == "horizontal" and "auroc" in scores
    snippets = [code for lang, f, code in guide_blocks() if lang == "python" and f is None]
    assert snippets, "the guide's metadata snippet is gone"
    for code in snippets:
        exec(compile(code, str(GUIDE), "exec"), {})
    version = _plugin(EXAMPLE / "src", "gentool_realnvp").__version__
    assert capsys.readouterr().out.startswith(version)


# -- every command in the guide parses ------------------------------------------------------------
def guide_commands() -> list[list[str]]:
    commands = []
    for language, _, code in guide_blocks():
        if language != "bash":
            continue
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["gentool"]:
                commands.append(words[1:])
    return commands


def test_guide_commands_parse(guide_registry, capsys, monkeypatch):
    """Each command runs through the CLI's parser; the work itself is stubbed out."""
    calls = []
    for name in ("train", "sample", "score", "bench"):
        monkeypatch.setattr(gentool.commands, name, lambda *a, _n=name: calls.append(_n))
    commands = guide_commands()
    assert len(commands) >= 12
    for args in commands:
        capsys.readouterr()
        assert cli.main(args) == 0, f"gentool {shlex.join(args)}: {capsys.readouterr().err}"
    assert set(calls) == {"train", "sample", "score", "bench"}


# -- the whole path: pip install into a fresh virtual environment ---------------------------------
def _fresh_venv(folder: Path) -> Path:
    """A venv whose python also sees this environment's packages (torch, gentool, pip)."""
    venv = folder / "venv"
    # No pip or setuptools of its own: this environment's (recent) ones install into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", purelib], capture_output=True, text=True, check=True)
    # addsitedir also runs the .pth files found there (editable installs); a path would not.
    ours = [p for p in sys.path if p.endswith("site-packages")]
    lines = [f"import site; site.addsitedir({p!r})" for p in ours]
    (Path(site.stdout.strip()) / "outer_environment.pth").write_text("\n".join(lines) + "\n")
    return python


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
def test_pip_install_both_guide_packages_into_a_venv(tmp_path):
    python = _fresh_venv(tmp_path)
    env = {**os.environ, "GENTOOL_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("GENTOOL_LOAD_PLUGINS", None)
    run_cli = "import sys; from gentool.cli import main; sys.exit(main(sys.argv[1:]))"

    def gentool_cli(command: str) -> str:
        args = [python, "-c", run_cli, *shlex.split(command)]
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, f"gentool {command}: {result.stderr}"
        return result.stdout

    if not _installed("gentool-realnvp"):  # else the venv sees this environment's copy
        before = gentool_cli("plugins") + gentool_cli("datasets")
        assert "realnvp" not in before and "bars" not in before
    # Build from copies, so that pip's build folders never land in the repository.
    example = tmp_path / "gentool-realnvp"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    for package in (example, write_bars_package(tmp_path)):
        pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        subprocess.run([*pip, package], check=True, env=env)
    listed = gentool_cli("plugins")
    assert "gentool-realnvp" in listed and "gentool-bars" in listed and "failed" not in listed
    assert "bars" in gentool_cli("datasets")
    for data in ("digits", "bars"):
        run = tmp_path / f"run-{data}"
        gentool_cli(f"train realnvp --data {data} --epochs 1 --out {run} {SMALL}")
        gentool_cli(f"sample realnvp -c {run} -n 4 --out {run}/s.png --device cpu")
        scores = json.loads(gentool_cli(f"score realnvp -c {run} --data {data} --json"))
        assert scores["mean_bits_per_dim"] > 0
    bench = json.loads(gentool_cli("bench realnvp --repeats 1 --json --device cpu"))
    assert "sample_over_train_step" in bench
