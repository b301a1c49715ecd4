"""Checks of a command's arguments made before any work starts, each a one-line error."""

from __future__ import annotations

import os
from pathlib import Path

from gentool.errors import UserError

__all__ = [
    "PRECISIONS",
    "SEED_LIMIT",
    "check_out_file",
    "check_out_folder",
    "check_precision",
    "check_seed",
    "inside",
]

#: Seeds are offset and multiplied (per epoch, per rank) before torch reads them, and
#: torch takes 64 bits: 32-bit seeds leave room for every such offset.
SEED_LIMIT = 2**32


#: The arithmetic a training step may run in (see :func:`gentool.runtime.backend_settings`).
PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision: str) -> None:
    """One line naming the choices, for a ``--precision`` that is not one."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")


def check_seed(seed: int) -> None:
    if not -SEED_LIMIT < seed < SEED_LIMIT:
        raise UserError(
            f"--seed must lie between -{SEED_LIMIT - 1} and {SEED_LIMIT - 1}, not {seed}"
        )


def check_out_folder(out: Path) -> None:
    """Refuse an output folder that cannot be written before any work starts (nothing is
    made)."""
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        what = "is a file" if existing == out else f"cannot be made: {existing} is a file"
        raise UserError(f"--out: {out} {what}; choose a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out: {out} cannot be written ({existing} is read-only)")


def check_out_file(path: Path, flag: str) -> None:
    """Refuse an output file that cannot be written before the work that fills it starts."""
    if path.is_dir():
        raise UserError(f"{flag}: {path} is a folder; give a file name")
    existing = next(p for p in path.parents if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise UserError(f"{flag}: {path} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: {path} cannot be written ({existing} is read-only)")


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (links resolved); False when either cannot be."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False
