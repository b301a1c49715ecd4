"""Ctrl-C outside a run's training loop: before training starts it is one line, status 130.

During training :class:`gentool.training.signals.StopFlag` owns SIGINT (a first Ctrl-C saves
and stops, a second raises :class:`SecondInterrupt`). Before that, Python raises
``KeyboardInterrupt`` wherever the signal lands: in torch's import, in data loading, and
an import cut short can surface as another exception. :class:`CtrlCWatch` notes the Ctrl-C,
so the CLI tells an interrupted start-up from a bug and never shows a traceback for it.

Light module (no torch import): the CLI uses it at start-up.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["STARTUP_INTERRUPTED", "CtrlCWatch", "SecondInterrupt", "StartupInterrupted"]

STARTUP_INTERRUPTED = "interrupted before training started: nothing was saved"


class SecondInterrupt(KeyboardInterrupt):
    """A second Ctrl-C during training: the run stops at once, its last save kept."""


class StartupInterrupted(Exception):
    """A Ctrl-C before training started (``train`` raises it for the CLI to say so)."""


class CtrlCWatch:
    """Within the block, a Ctrl-C raises ``KeyboardInterrupt`` as Python's own handler does,
    and is noted; :meth:`interrupted` says whether an error came of one.

    Installed only in the main thread and only over Python's default handler, so a caller
    that handles SIGINT itself keeps its handler.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def __enter__(self) -> CtrlCWatch:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def interrupted(self, err: BaseException) -> bool:
        """Whether ``err`` came of a Ctrl-C other than a second one during training: a
        ``KeyboardInterrupt`` in its chain, or any error after a noted Ctrl-C."""
        seen: set[int] = set()
        cause: BaseException | None = err
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, SecondInterrupt):
                return False
            if isinstance(cause, KeyboardInterrupt | StartupInterrupted):
                return True
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        return self.seen
