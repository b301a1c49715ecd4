"""Training progress on stderr with Rich: epochs, steps, losses and speed.

stdout is left to results, so ``--json`` output pipes cleanly.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["TrainProgress", "note", "stderr_console"]


class _StderrConsole(Console):
    """A console whose output may go unread: a closed stderr (``2>&1 | head -1``) silences
    it rather than ending the command (Rich's default exits), so a run trains on and saves."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


def stderr_console() -> Console:
    """Rich on stderr, for progress, notes and error lines; a broken pipe silences it."""
    return _StderrConsole(stderr=True, log_path=False)


def note(text: str) -> None:
    """One line on stderr, as written (no markup), that a closed stderr never turns into an
    error."""
    stderr_console().print(text, markup=False, highlight=False, soft_wrap=True)


class TrainProgress:
    """An epoch bar and a step bar; a one-line summary per epoch that stays in the log."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console = stderr_console()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not enabled,
            transient=False,
        )

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def start(self, name: str, epochs: int, steps: int, done: int) -> None:
        self.steps = steps
        self.epochs_task = self.progress.add_task(
            f"{name} epochs", total=epochs, completed=done, status=""
        )
        self.steps_task = self.progress.add_task("steps", total=steps, status="")

    def update_step(self, step_in_epoch: int, means: dict[str, float], rate: float) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(means.items())[:4])
        self.progress.update(
            self.steps_task, completed=step_in_epoch, status=f"{shown}  {rate:.1f} it/s"
        )

    def end_epoch(self, epoch: int, record: dict[str, Any], best: float | None) -> None:
        self.progress.update(self.epochs_task, completed=epoch)
        self.progress.reset(self.steps_task, total=self.steps, status="")
        if not self.enabled:
            return
        keys = [k for k in record if k not in ("type", "epoch", "step") and not k.startswith("lr")]
        parts = [f"{k} {record[k]:.4g}" for k in keys[:8]]
        if best is not None:
            parts.append(f"best val {best:.4g}")
        self.console.log(f"epoch {epoch}: " + ", ".join(parts))
