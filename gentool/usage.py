"""The parser's one-line messages, made specific where gentool knows better: a command run
without its FAMILY, a ``train`` option meant for another data kind, ``train`` of an
unknown family."""

from __future__ import annotations

import typer

from gentool.registry import get_registry
from gentool.train_command import foreign_data_option

__all__ = ["check_train_family", "missing_family", "usage_message"]

#: The capability each command needs of its FAMILY argument (None: any family).
_COMMAND_CAPABILITY = {
    "train": "train",
    "sample": "sample",
    "score": "score",
    "translate": "translate",
    "bench": None,
    "info": None,
}


def missing_family(command: str) -> str:
    """The message for ``gentool COMMAND`` without its FAMILY: which families would do."""
    capability = _COMMAND_CAPABILITY.get(command)
    families = get_registry().families
    able = sorted(n for n, s in families.items() if capability is None or s.can(capability))
    which = f"families that can {capability}" if capability else "installed families"
    return f"missing FAMILY; {which}: {', '.join(able) or 'none'}"


def usage_message(err: Exception) -> str:
    """The parser's message, made specific where gentool knows better."""
    ctx = getattr(err, "ctx", None)
    param = getattr(err, "param", None)
    option = getattr(err, "option_name", None)
    if ctx is None:
        return err.format_message()
    if isinstance(err, typer.BadParameter) and param is not None and param.name == "family":
        return missing_family(ctx.command.name)  # a command run without its FAMILY
    if option and ctx.parent is not None and ctx.parent.command.name == "train":
        return foreign_data_option(option, ctx.command.name) or err.format_message()
    return err.format_message()


def check_train_family(args: list[str]) -> None:
    """``gentool train NAME``: name the known families rather than 'No such command'."""
    words = [a for a in args if a != "--debug"]
    if len(words) >= 2 and words[0] == "train" and not words[1].startswith("-"):
        get_registry().family(words[1], "train")
