"""Start-up stays light: --help, plugins and shell completion never import torch."""

import os
import subprocess
import sys

import pytest

# atexit: shell completion ends the process from inside the CLI.
PROBE = """
import atexit, sys

@atexit.register
def report():
    heavy = sorted(m for m in ("torch", "torchvision", "sklearn", "matplotlib") if m in sys.modules)
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)

from gentool.cli import main
sys.exit(main({args!r}))
"""


def _run(args, env=None):
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["plugins"],
        ["info", "maf"],
        ["datasets"],
        ["train", "--help"],
        ["train", "maf", "--help"],
        ["--version"],
    ],
)
def test_light_commands_do_not_import_torch(args):
    result = _run(args)
    assert result.returncode == 0, result.stderr
    assert result.stderr.rstrip().endswith("HEAVY="), result.stderr


@pytest.mark.parametrize("args", [["train"], ["sample"], ["info"]])
def test_a_missing_family_is_a_light_one_line_error(args):
    result = _run(args)
    assert result.returncode == 2
    lines = result.stderr.rstrip().splitlines()
    assert lines[0].startswith("error: missing FAMILY; ") and "maf" in lines[0], result.stderr
    assert lines[1:] == ["HEAVY="]


def test_shell_completion_does_not_import_torch():
    env = {"_GENTOOL_COMPLETE": "complete_bash", "COMP_WORDS": "gentool train m", "COMP_CWORD": "2"}
    result = _run([], env)
    assert "maf" in result.stdout and "made" in result.stdout
    assert result.stderr.rstrip().endswith("HEAVY=")


def test_version_matches_package():
    from importlib.metadata import version

    result = _run(["--version"])
    assert result.stdout.strip() == f"gentool {version('gentool')}"
