"""Errors a user can fix (printed as one line, exit 2), the one for a diverged run, and the
one-line messages the CLI makes of other errors."""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "NoClasses",
    "TrainingDiverged",
    "UserError",
    "one_line",
    "out_of_memory",
    "partial_file",
    "writing",
]


class UserError(Exception):
    """Something the user can fix: a bad flag, a missing folder, a foreign checkpoint.

    The CLI prints ``error: <message>`` on one line and exits with status 2; no traceback.
    The message says what is wrong and, where it can, what to do.
    """


class NoClasses(UserError):
    """A normal class was asked of data that has no classes (a flat folder of images)."""


class TrainingDiverged(Exception):
    """A training loss became NaN or infinite; the run stopped and kept its last good checkpoint.

    The CLI prints it on one line and exits with status 1.
    """


@contextmanager
def writing(flag: str, path: Path) -> Iterator[None]:
    """Output the user named with ``flag`` that the OS refuses (a folder of that name, a
    full disk, no permission) becomes one line naming the file."""
    try:
        yield
    except OSError as err:
        where = err.filename or path
        raise UserError(f"{flag}: cannot write {where}: {err.strerror or err}") from None


@contextmanager
def partial_file(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed to ``path`` when the block
    ends: a full disk leaves no empty or cut output, and an older file stays whole. An
    OSError names ``path``, not the temporary file."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield partial
        os.replace(partial, path)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def out_of_memory(err: Exception) -> str | None:
    """One line for torch running out of memory (CUDA or host), or None for other errors.

    Most often a GPU too small for the image size or batch (CycleGAN at 256 px wants more
    than 4 GB): the cure is a flag, so the user gets the flag, not a traceback.
    """
    text = str(err)
    cuda = type(err).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text
    if not (cuda or "can't allocate memory" in text):
        return None
    asked = ""
    match = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGT]iB|\d+ bytes)", text)
    if match:
        amount = match.group(1)
        if amount.endswith(" bytes"):
            amount = f"{int(amount.split()[0]) / 2**30:.2f} GiB"
        asked = f" (one allocation of {amount})"
    where = "the GPU" if cuda else "the host"
    return (
        f"out of memory on {where}{asked}: lower --batch-size, --image-size or the network's "
        "size (`gentool bench FAMILY` reports peak memory); checkpoints already written are "
        "kept"
    )


def one_line(err: Exception) -> str:
    """The message alone, also when a DataLoader worker wrapped it in its traceback."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split("UserError: ", 1)[-1]
    return text
