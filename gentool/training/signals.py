"""Stop signals: Ctrl-C and SIGTERM ask a run to stop after its current step and save."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gentool.interrupts import SecondInterrupt

__all__ = ["StopFlag", "ignore_stop_signals"]


class StopFlag:
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's or torchrun's kill) asks the loop to stop
    after the current step and save; a second Ctrl-C aborts at once.

    A repeated SIGTERM never aborts: a scheduler may signal every process of a job, and
    torchrun forwards its own, so one stop can arrive twice. While :meth:`protect` holds
    (checkpoint writes at the end of a run), a second Ctrl-C waits until the write is done.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the signal that asked to stop
        self._interrupts = 0
        self._protected = False
        self._abort_pending = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if in_main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                if self._protected:
                    self._abort_pending = True
                    return
                raise SecondInterrupt
        if not self.requested:
            self.requested, self.signum = True, signum

    @contextmanager
    def protect(self) -> Iterator[None]:
        """Let a second Ctrl-C abort only once the block (a checkpoint write) is done."""
        self._protected = True
        try:
            yield
        finally:
            self._protected = False
        if self._abort_pending:
            raise SecondInterrupt

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM to the main process: a scheduler signals every
    process of a job, and a worker killed by it would make torch raise in the main process
    before the run could save. The workers end with their iterator, or with the main
    process (torch watches it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
