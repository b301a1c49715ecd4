"""``gentool train FAMILY``: one sub-command per family, its options built from schemas.

The shared options come from :class:`gentool.options.TrainOptions` (those that apply to
the family's data kind), the family's own from its hyperparameter dataclass; the command
hands both, typed, to :func:`gentool.commands.train`.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from gentool.config import config_fields
from gentool.family import DataKind, FamilySpec
from gentool.interrupts import SecondInterrupt, StartupInterrupted
from gentool.options import DATA_OPTIONS, TrainOptions, applies_to
from gentool.registry import get_registry

__all__ = ["foreign_data_option", "train_command"]


def _shared_options(kind: DataKind) -> list[tuple[str, Any, Any]]:
    """``(name, annotation, typer.Option)`` of each shared ``train`` option that applies to a
    family on ``kind`` data (the others keep their defaults)."""
    hints = typing.get_type_hints(TrainOptions)
    options = []
    for f in dataclasses.fields(TrainOptions):
        if not applies_to(f.name, kind):
            continue
        meta = f.metadata
        flags = meta["flags"] or ("--" + f.name.replace("_", "-"),)
        option = typer.Option(f.default, *flags, help=meta["help"], rich_help_panel=meta["panel"])
        options.append((f.name, hints[f.name], option))
    return options


def foreign_data_option(flag: str, family: str) -> str | None:
    """Why ``gentool train FAMILY`` has no ``flag``, when the flag is for other data kinds."""
    name = flag.removeprefix("--").removeprefix("no-").replace("-", "_")
    spec = get_registry().families.get(family)
    fields = TrainOptions.__dataclass_fields__
    if spec is None or name not in fields or applies_to(name, spec.data_kind):
        return None
    able = " and ".join(sorted(fields[name].metadata["kinds"]))
    return f"{flag} is for {able} data; {family} trains on {spec.data_kind.value} data"


def train_command(spec: FamilySpec) -> Callable[..., int]:
    """The ``gentool train NAME`` command of ``spec``: the shared options that apply to its
    data kind, then one option per hyperparameter (parsed by its ``ConfigField``)."""
    fields = config_fields(spec.config)
    shared = _shared_options(spec.data_kind)

    def command(ctx: typer.Context, **kwargs: Any) -> int:
        explicit = {
            f.name: kwargs[f.name]
            for f in fields
            if kwargs[f.name] is not None and _given(ctx, f.name)
        }
        options = TrainOptions(**{name: kwargs[name] for name, _, _ in shared})
        # A resumed run checks the data options the user typed against its own.
        given = frozenset(n for n, _, _ in shared if n in DATA_OPTIONS and _given(ctx, n))
        try:
            from gentool import commands  # torch loads here: seconds a Ctrl-C may cut short

            return commands.train(spec, explicit, options, given)
        except SecondInterrupt:  # during training: the run has said what it saved
            raise
        except KeyboardInterrupt:
            raise StartupInterrupted from None

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [ctx_param]
    annotations: dict[str, Any] = {"ctx": typer.Context}
    for name, kind, option in shared:
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option))
        annotations[name] = kind
    for f in fields:  # the registry has checked that no field takes a reserved name
        # Help is Rich markup: escape the family's text, whatever brackets it holds.
        text = escape(f"{f.help} [default: {f.format_default()}]")
        panel = f"{spec.name} hyperparameters"
        if f.kind is bool:
            flags = f"{f.flag}/--no-{f.flag[2:]}"
            option = typer.Option(None, flags, help=text, show_default=False, rich_help_panel=panel)
            annotations[f.name] = bool | None
        else:
            metavar = f.describe_type().upper()
            option = typer.Option(
                None,
                f.flag,
                help=text,
                show_default=False,
                metavar=metavar,
                rich_help_panel=panel,
            )
            annotations[f.name] = str | None  # parsed by ConfigField for uniform errors
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option))
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = annotations
    command.__doc__ = f"{spec.summary} ({spec.data_kind.value} data; plugin {spec.plugin})"
    return command


def _given(ctx: typer.Context, name: str) -> bool:
    """True when the user typed the option (not when it only took its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
