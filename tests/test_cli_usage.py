"""Usage mistakes get a real one-line message: a missing FAMILY, a data option of another kind."""

import dataclasses

import pytest
import typer

from gentool import cli
from gentool.options import TrainOptions
from gentool.registry import get_registry


@pytest.fixture
def run(capsys, monkeypatch):
    """``gentool ARGS`` in-process: (exit status, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that Rich never wraps a line

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def _able(capability: str | None) -> str:
    families = get_registry().families
    return ", ".join(
        sorted(n for n, s in families.items() if capability is None or s.can(capability))
    )


def test_bare_gentool_shows_the_help_without_an_error(run):
    code, out, err = run()
    assert code == 0
    assert "Usage: gentool" in out and "train" in out
    assert "error" not in err


@pytest.mark.parametrize(
    ("args", "capability"),
    [
        (["train"], "train"),
        (["sample"], "sample"),
        (["sample", "-c", "runs/x"], "sample"),
        (["score", "--json"], "score"),
        (["translate"], "translate"),
        (["bench"], None),
        (["info"], None),
    ],
)
def test_a_missing_family_names_the_families_that_would_do(run, args, capability):
    code, out, err = run(*args)
    assert code == 2
    which = f"families that can {capability}" if capability else "installed families"
    expected = f"error: missing FAMILY; {which}: {_able(capability)}"
    assert err.startswith(expected), err
    assert f"(see `gentool {args[0]} --help`)" in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_train_lists_the_families_that_can_train(run):
    _, _, err = run("train")
    assert "cyclegan" in err and "maf" in err and "pix2pix" in err


# -- gentool train FAMILY shows the data options of its data kind -------------------------------
TRANSLATION_ONLY = ("--load-size", "--flip", "--no-flip", "--direction")
IMAGES_ONLY = ("--normal-class",)
SHARED = ("--data", "--image-size", "--channels", "--out", "--device", "--resume", "--precision")


def _train_command(family: str):
    cli._register_train_commands()
    return typer.main.get_command(cli.app).commands["train"].commands[family]


def _train_flags(family: str) -> set[str]:
    return {o for p in _train_command(family).params for o in (*p.opts, *p.secondary_opts)}


def _families(*kinds: str) -> list[str]:
    return sorted(n for n, s in get_registry().families.items() if s.data_kind in kinds)


@pytest.mark.parametrize("family", _families("images"))
def test_image_families_show_no_translation_options(family, run):
    flags = _train_flags(family)
    assert not flags & set(TRANSLATION_ONLY)
    assert set(IMAGES_ONLY + SHARED) <= flags
    _, out, _ = run("train", family, "--help")
    for flag in TRANSLATION_ONLY:
        assert flag not in out
    for flag in IMAGES_ONLY + SHARED:
        assert flag in out


@pytest.mark.parametrize("family", _families("unpaired", "paired"))
def test_translation_families_show_their_data_options(family, run):
    flags = _train_flags(family)
    assert set(TRANSLATION_ONLY + SHARED) <= flags
    assert not flags & set(IMAGES_ONLY)
    _, out, _ = run("train", family, "--help")
    for flag in TRANSLATION_ONLY + SHARED:
        assert flag in out


def test_every_shared_option_applies_to_some_family():
    shown = {p.name for f in get_registry().families for p in _train_command(f).params}
    assert {f.name for f in dataclasses.fields(TrainOptions)} <= shown


def test_a_data_option_of_another_kind_says_so(run):
    code, _, err = run("train", "maf", "--data", "digits", "--direction", "b2a")
    assert code == 2
    assert "--direction is for paired and unpaired data; maf trains on images data" in err
    code, _, err = run("train", "cyclegan", "--data", "toy-shapes", "--normal-class", "0")
    assert code == 2
    assert "--normal-class is for images data; cyclegan trains on unpaired data" in err


def test_hidden_data_options_keep_their_defaults(run, monkeypatch):
    import gentool.commands

    seen = {}

    def train(spec, explicit, options, given):
        seen.update(dataclasses.asdict(options))

    monkeypatch.setattr(gentool.commands, "train", train)
    assert run("train", "maf", "--data", "digits", "--normal-class", "3")[0] == 0
    assert seen["normal_class"] == "3"
    assert (seen["load_size"], seen["flip"], seen["direction"]) == (None, True, "a2b")
    assert run("train", "pix2pix", "--data", "facades", "--direction", "b2a", "--no-flip")[0] == 0
    assert (seen["direction"], seen["flip"], seen["normal_class"]) == ("b2a", False, None)
