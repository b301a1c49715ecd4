"""The ``gentool`` command line: parses, finds the family and data, and hands over to the engine.

Thin by design: torch and the families' modules are imported only inside the command that
needs them (see :mod:`gentool.commands`), so ``gentool --help`` and ``gentool plugins`` stay
fast. User errors print one line ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gentool import __version__
from gentool.config import config_fields, env_flag
from gentool.errors import TrainingDiverged, UserError, one_line, out_of_memory
from gentool.interrupts import STARTUP_INTERRUPTED, CtrlCWatch
from gentool.progress import stderr_console
from gentool.registry import get_registry
from gentool.train_command import train_command
from gentool.usage import check_train_family, missing_family, usage_message

__all__ = ["app", "main"]

app = typer.Typer(
    name="gentool",
    help="Train, sample, score, translate and benchmark deep generative models.",
    pretty_exceptions_enable=False,
    add_completion=True,
)
# One sub-command per family that can train, its options built from its config
# (gentool.train_command), added at start-up by _register_train_commands.
train_app = typer.Typer(
    help="Train a model family: gentool train FAMILY --data NAME|DIR \\[OPTIONS].",
)
app.add_typer(train_app, name="train")

stdout = Console()
stderr = stderr_console()  # a closed stderr never stops a command

# Options every command that runs a model shares.
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (auto takes a GPU if any).")]
Checkpoint = Annotated[
    str, typer.Option("--checkpoint", "-c", help="A run folder or a .safetensors file.")
]


def _version(value: bool) -> None:
    if value:
        stdout.print(f"gentool {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of errors (or GENTOOL_DEBUG=1).")
    ] = False,
) -> None:
    """Train, sample, score, translate and benchmark deep generative models."""
    # --debug is read by main() before parsing, so errors raised while parsing obey it too.
    if ctx.invoked_subcommand is None:  # a bare `gentool` asks for the help, not an error
        text = ctx.get_help()  # Rich prints the help itself and returns ""
        if text:
            typer.echo(text)
        raise typer.Exit()


@train_app.callback(invoke_without_command=True)
def _train(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        raise UserError(f"{missing_family('train')} (see `gentool train --help`)")


# -- inspection -------------------------------------------------------------------------------
@app.command()
def plugins() -> None:
    """List plugins, their families and datasets, versions, and load errors."""
    registry = get_registry()
    table = Table(title="gentool plugins")
    for column in ("plugin", "package", "version", "families", "capabilities", "status"):
        table.add_column(column)
    for info in registry.plugins.values():
        caps = sorted({c for f in info.families for c in registry.families[f].capabilities})
        names = info.families + [f"{d} (data)" for d in info.datasets]
        status = "ok"
        if info.error:
            status = (
                "[yellow]partly loaded (below)[/yellow]" if names else "[red]failed (below)[/red]"
            )
        table.add_row(
            info.name + ("" if not info.builtin else " (built-in)"),
            info.package,
            info.version,
            "\n".join(names),
            ", ".join(caps),
            status,
        )
    stdout.print(table)
    for info in registry.plugins.values():
        if info.error:
            stdout.print(f"[red]{info.name}[/red] ({info.package}): {info.error}", soft_wrap=True)


@app.command()
def info(family: Annotated[str, typer.Argument(help="A family name, e.g. maf.")]) -> None:
    """Show a family's hyperparameters (defaults and help), capabilities and data kind."""
    spec = get_registry().family(family)
    stdout.print(f"[bold]{spec.name}[/bold]: {spec.summary}")
    stdout.print(f"plugin {spec.plugin} {spec.plugin_version}; data: {spec.data_kind.value}")
    able = [c for c in ("train", "sample", "score", "translate") if spec.can(c)]
    stdout.print(f"can: {', '.join(able + ['bench'])}")
    table = Table(title=f"{spec.name} hyperparameters (gentool train {spec.name} --help)")
    for column in ("option", "type", "default", "help"):
        table.add_column(column)
    for f in config_fields(spec.config):
        table.add_row(f.flag, f.describe_type(), f.format_default(), f.help)
    stdout.print(table)


@app.command()
def datasets() -> None:
    """List the named datasets: kind, size, whether they are in the cache."""
    from gentool.data.base import cache_dir

    table = Table(title=f"named datasets (cache: {cache_dir() / 'datasets'})")
    for column in ("name", "kind", "size", "cached", "summary"):
        table.add_column(column)
    for entry in sorted(get_registry().datasets.values(), key=lambda e: (e.kind, e.name)):
        cached = "built in" if entry.is_cached is None else ("yes" if entry.cached() else "no")
        table.add_row(entry.name, entry.kind.value, entry.size, cached, entry.summary)
    stdout.print(table)


def _register_train_commands() -> None:
    known = {command.name for command in train_app.registered_commands}
    for spec in sorted(get_registry().families.values(), key=lambda s: s.name):
        if spec.can("train") and spec.name not in known:
            train_app.command(name=spec.name)(train_command(spec))


# -- using a trained model ------------------------------------------------------------------
@app.command()
def sample(
    family: Annotated[str, typer.Argument(help="A family that can sample, e.g. maf.")],
    checkpoint: Checkpoint,
    n: Annotated[int, typer.Option("-n", "--num", help="How many images.")] = 64,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="A .png grid, or a folder for one file per image.")
    ] = Path("samples.png"),
    temperature: Annotated[
        float, typer.Option(help="Scale of the base noise (below 1: cleaner, less varied).")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images generated per batch.")] = 256,
    device: Device = "auto",
) -> None:
    """Draw new images from a trained model."""
    from gentool import commands

    commands.sample(
        get_registry().family(family, "sample"),
        checkpoint,
        n,
        out,
        temperature,
        seed,
        batch_size,
        device,
    )


@app.command()
def score(
    family: Annotated[str, typer.Argument(help="A family that can score, e.g. maf or cyclegan.")],
    checkpoint: Checkpoint,
    images: Annotated[Path | None, typer.Option(help="A folder of images to score.")] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Dataset name or folder.")
    ] = None,
    split: Annotated[str, typer.Option(help="Which split of --data.")] = "test",
    normal_class: Annotated[
        str | None, typer.Option(help="The normal class (default: the one trained on).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout.")
    ] = False,
    csv: Annotated[
        Path | None, typer.Option(help="Write per-image scores to this CSV file.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the dequantisation noise.")] = 0,
    maps: Annotated[
        Path | None,
        typer.Option(help="Write a heat-map grid per image into this folder (families with maps)."),
    ] = None,
    device: Device = "auto",
) -> None:
    """Score images: NLL, bits/dim, AUROC/AUPRC (flows); reconstruction and FID (translation)."""
    if (images is None) == (data is None):
        raise UserError("score needs exactly one of --images DIR or --data NAME|DIR")
    from gentool import commands

    commands.score(
        get_registry().family(family, "score"),
        checkpoint,
        images,
        data,
        split,
        normal_class,
        as_json,
        csv,
        batch_size,
        seed,
        device,
        maps,
    )


@app.command()
def translate(
    family: Annotated[str, typer.Argument(help="A family that can translate, e.g. cyclegan.")],
    checkpoint: Checkpoint,
    images: Annotated[Path, typer.Option(help="Folder of input images (any size).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the outputs (same file names).")
    ],
    direction: Annotated[
        str | None,
        typer.Option(help="a2b or b2a \\[CycleGAN: a2b; Pix2Pix: the direction it was trained]."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Images per batch (same-size images are batched).")
    ] = 8,
    max_size: Annotated[
        int | None, typer.Option(help="Translate at most this long a side, then resize back.")
    ] = None,
    device: Device = "auto",
) -> None:
    """Translate a folder of images into another domain."""
    from gentool import commands

    commands.translate(
        get_registry().family(family, "translate"),
        checkpoint,
        images,
        out,
        direction,
        batch_size,
        max_size,
        device,
    )


@app.command()
def bench(
    family: Annotated[str, typer.Argument(help="Any family.")],
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", "-c", help="Measure this model instead of a fresh one."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Training batch size \\[the family's default].")
    ] = None,
    sample_batch: Annotated[
        int, typer.Option(help="Images per sampling/scoring/translation batch.")
    ] = 64,
    image_size: Annotated[int | None, typer.Option(help="Image size of a fresh model.")] = None,
    channels: Annotated[int | None, typer.Option(help="Channels of a fresh model.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Hyperparameters of a fresh model (TOML or JSON) \\[the defaults]."),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed runs per operation (median reported).")] = 5,
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads \\[torch's default].")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout.")
    ] = False,
    device: Device = "auto",
    precision: Annotated[
        str,
        typer.Option(help="The training step's arithmetic, as in train: fp32, tf32 or bf16."),
    ] = "fp32",
) -> None:
    """Time training, sampling, scoring and translation; peak memory; sample/train ratio."""
    from gentool import commands

    commands.bench(
        get_registry().family(family),
        checkpoint,
        batch_size,
        sample_batch,
        image_size,
        channels,
        config,
        repeats,
        threads,
        as_json,
        device,
        precision,
    )


# -- entry point ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (console script and tests)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or env_flag("GENTOOL_DEBUG")
    with CtrlCWatch() as ctrl_c:
        try:
            return _main(args, debug)
        except (KeyboardInterrupt, Exception) as err:
            if not ctrl_c.interrupted(err):
                raise
            # A Ctrl-C during training is the loop's to tell (what it saved); before it:
            if [a for a in args if a != "--debug"][:1] == ["train"]:
                stderr.print(STARTUP_INTERRUPTED, highlight=False, soft_wrap=True)
            return 130


def _error(message: str, debug: bool, err: BaseException | None = None) -> None:
    """One line ``error: ...``; with --debug, the traceback first (the status stays)."""
    if debug and err is not None:
        traceback.print_exception(err)
    stderr.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)


def _main(args: list[str], debug: bool) -> int:
    _register_train_commands()
    try:
        check_train_family(args)
    except UserError as err:
        _error(str(err), False)
        return 2
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="gentool", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except UserError as err:
        _error(one_line(err), debug, err)
        return 2
    except TrainingDiverged as err:
        if debug:
            raise
        _error(str(err), False)
        return 1
    except typer.Exit as err:
        return err.exit_code
    except typer.Abort:
        stderr.print("aborted")
        return 130
    except Exception as err:
        memory = out_of_memory(err)
        if memory is not None and not debug:
            _error(memory, False)
            return 1
        # Usage errors of the parser (unknown option, bad value): one line, like ours.
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):
            hint = ""
            ctx = getattr(err, "ctx", None)
            if ctx is not None:
                hint = f" (see `{ctx.command_path} --help`)"
            _error(f"{usage_message(err)}{hint}", debug, err)
            return err.exit_code
        raise
