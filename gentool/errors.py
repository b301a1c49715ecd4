"""The one exception type for mistakes a user can fix (printed as one line, exit 2)."""

__all__ = ["NoClasses", "TrainingDiverged", "UserError"]


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
