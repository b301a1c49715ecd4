"""Loss curves as PNG (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["plot_losses"]


def plot_losses(
    history: list[dict[str, Any]], path: Path, title: str = "", by: str = "epoch"
) -> None:
    """One small panel per logged loss, per epoch; validation beside the training loss.

    ``history`` holds records of ``metrics.jsonl``: the epoch records, or with ``by="step"``
    the step records (a run stopped before its first epoch ended has only those).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    skip = {"type", "epoch", "step"}
    keys = [k for k in history[0] if k not in skip and not k.startswith("lr_") and k != "val_loss"]
    if not keys:
        return
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    xs = [r[by] for r in history]

    marker = "o" if len(history) < 30 else None  # one epoch is still a visible point
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.plot(xs, [r.get(key, math.nan) for r in history], marker=marker, ms=3, label="train")
        if key == "loss" and any("val_loss" in r for r in history):
            values = [r.get("val_loss", math.nan) for r in history]
            ax.plot(xs, values, marker=marker, ms=3, label="validation")
            ax.legend(fontsize=7)
        if len(xs) <= 10:
            ax.set_xticks(xs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(by, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
