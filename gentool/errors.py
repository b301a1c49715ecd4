"""Errors a user can fix (printed as one line, exit 2), and the one for a diverged run."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["NoClasses", "TrainingDiverged", "UserError", "writing"]


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
