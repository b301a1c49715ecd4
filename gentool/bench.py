"""``gentool bench``: time what a family does, with warm-up, medians and honest clocks.

Measures one training step, sampling, scoring and translation (whichever the family can
do) plus any extra operations the model offers, the peak memory of each, and the report's
ratio: the time to generate a batch of images over the time of one training batch. CUDA
is synchronised before every clock reading. Peak memory is per operation on CUDA (the
allocator's high-water mark of tensors); on the CPU it is the process's peak resident
memory after each operation, a running high-water mark (operations run in table order).
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from gentool.config import config_to_dict
from gentool.errors import UserError
from gentool.family import DataKind, FamilySpec
from gentool.model import Model
from gentool.progress import stderr_console
from gentool.runtime import backend_settings, precision_context

__all__ = ["device_name", "peak_rss_mb", "run_bench", "synthetic_batch", "time_op"]


def synthetic_batch(model: Model, n: int) -> Any:
    """A batch shaped like the model's data: quantised images in [0, 1] (labels for images)."""
    info = model.data
    shape = (n, *info.shape)

    def images() -> torch.Tensor:
        levels = info.levels
        return torch.randint(0, levels, shape, device=model.device).float() / (levels - 1)

    if info.kind == DataKind.IMAGES:
        return images(), torch.zeros(n, dtype=torch.long, device=model.device)
    return {"A": images(), "B": images()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_op(
    fn: Callable[[], Any],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs, and peak
    memory; ``tick`` is called after each run, outside the clock (progress)."""
    for _ in range(warmup):
        fn()
        tick()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        runs.append(time.perf_counter() - start)
        tick()
    result: dict[str, Any] = {"median_s": statistics.median(runs), "runs_s": runs}
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB so far."""
    # ru_maxrss is in KiB on Linux (bytes on macOS): the process's peak resident memory.
    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run_bench(
    spec: FamilySpec,
    model: Model,
    batch_size: int | None,
    sample_batch: int,
    repeats: int,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Time every operation ``spec`` declares on ``model``; returns a JSON-able report.

    Everything runs under the backend switches a training run of ``precision`` sets (cuDNN
    autotuning and TF32 on CUDA), and the training step in its arithmetic (bf16 autocast),
    so the step timed is the step ``gentool train --precision`` takes.
    """
    with backend_settings(precision, model.device):
        return _run_bench(spec, model, batch_size, sample_batch, repeats, precision)


def _run_bench(
    spec: FamilySpec,
    model: Model,
    batch_size: int | None,
    sample_batch: int,
    repeats: int,
    precision: str,
) -> dict[str, Any]:
    device = model.device
    train_batch = batch_size or model.config.batch_size
    report: dict[str, Any] = {
        "family": spec.name,
        "device": str(device),
        "device_name": device_name(device),
        "dtype": str(next(model.networks.parameters()).dtype).replace("torch.", ""),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "data_shape": list(model.data.shape),
        "train_batch": train_batch,
        "sample_batch": sample_batch,
        "repeats": repeats,
        "parameters": sum(p.numel() for p in model.networks.parameters()),
        "config": config_to_dict(model.config),
        "ops": {},
    }
    ops: dict[str, tuple[Callable[[], Any], int]] = {}
    skipped: dict[str, str] = {}
    if spec.can("train"):
        try:
            model.configure_training()
        except UserError as err:
            # A run whose training needs something gone (a distilled IAF's teacher) can
            # still be timed sampling and scoring; the report says why the step is missing.
            skipped["train_step"] = str(err)
        else:
            batch = synthetic_batch(model, train_batch)

            def train_step() -> None:
                model.train()
                with precision_context(precision, device):
                    model.train_step(batch)

            ops["train_step"] = (train_step, train_batch)
    eval_batch = synthetic_batch(model, sample_batch)
    if spec.can("sample"):
        ops["sample"] = (lambda: _eval(model, lambda: model.sample(sample_batch)), sample_batch)
    if spec.can("score"):
        ops["score"] = (lambda: _eval(model, lambda: model.score_batch(eval_batch)), sample_batch)
    if spec.can("translate"):
        images = eval_batch[0] if isinstance(eval_batch, tuple) else eval_batch["A"]
        ops["translate"] = (lambda: _eval(model, lambda: model.translate(images)), sample_batch)
    for name, extra in model.benchmarks(sample_batch).items():
        # (callable, images) per the Model contract; a bare callable handles sample_batch.
        fn, items = extra if isinstance(extra, tuple) else (extra, sample_batch)
        ops[name if name not in ops else f"{name}_extra"] = (lambda fn=fn: _eval(model, fn), items)
    with _progress(spec.name, len(ops) * (repeats + 1)) as show:
        for name, (fn, items) in ops.items():
            result = time_op(fn, device, repeats, tick=show(name))
            result["items"] = items
            result["per_item_s"] = result["median_s"] / items
            report["ops"][name] = result
    timings = report["ops"]
    # The report's figure: generating a batch of images / one training batch (for a
    # translation family, translating is its way of generating).
    for name in ("sample", "score", "translate"):
        if "train_step" in timings and name in timings:
            report[f"{name}_over_train_step"] = (
                timings[name]["median_s"] / timings["train_step"]["median_s"]
            )
    report["skipped"] = skipped
    if device.type != "cuda":
        report["peak_rss_mb"] = peak_rss_mb()
    return report


@contextmanager
def _progress(family: str, runs: int) -> Iterator[Callable[[str], Callable[[], None]]]:
    """A bar over every timed and warm-up run, on stderr where it is a terminal (as
    scoring's): a sampling MAF or a CycleGAN at 128 px can take minutes, which should not
    pass in silence. It is drawn only between runs (no refresh thread), never on the clock.
    Yields ``show(operation)``, which names the operation and returns its ``tick``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = stderr_console()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns,
        console=console,
        transient=True,
        auto_refresh=False,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(f"bench {family}", total=runs)

        def show(operation: str) -> Callable[[], None]:
            bar.update(task, description=f"bench {family}: {operation}", refresh=True)

            def tick() -> None:
                bar.advance(task)
                bar.refresh()

            return tick

        yield show


def _eval(model: Model, fn: Callable[[], Any]) -> Any:
    model.eval()
    with torch.inference_mode():
        return fn()


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name where the OS tells it (benchmarks quote it)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # Linux names the CPU model here; platform.processor() often says only "x86_64"
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        for name, reason in report.get("skipped", {}).items():
            print(f"note: {name} not timed: {reason}", file=sys.stderr)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    precision = report.get("precision", "fp32")
    arithmetic = report["dtype"] + ("" if precision == "fp32" else f", {precision} training")
    console.print(
        f"[bold]{report['family']}[/bold] ({report.get('model', 'fresh')}) on "
        f"{report['device']} ({report['device_name']}), {arithmetic}, "
        f"{report['threads']} thread{'' if report['threads'] == 1 else 's'}, "
        f"torch {report['torch']}, "
        f"data {'x'.join(map(str, report['data_shape']))}, "
        f"{report['parameters']:,} parameters, training batch {report['train_batch']}, "
        f"sampling batch {report['sample_batch']}"
    )
    table = Table()
    for column in ("operation", "batch", "median", "per image", "peak memory"):
        table.add_column(column, justify="right")
    for name, op in report["ops"].items():
        if "peak_memory_mb" in op:
            memory = f"{op['peak_memory_mb']:.0f} MiB"
        else:
            memory = f"{op['peak_rss_mb']:.0f} MiB RSS" if "peak_rss_mb" in op else "-"
        table.add_row(name, str(op["items"]), _fmt(op["median_s"]), _fmt(op["per_item_s"]), memory)
    console.print(table)
    for name, reason in report.get("skipped", {}).items():
        console.print(f"{name} not timed: {reason}")
    if "sample_over_train_step" in report:
        console.print(
            f"generating {report['sample_batch']} images takes "
            f"{report['sample_over_train_step']:.3g}x one training step of "
            f"{report['train_batch']} (the report's ratio)"
        )
    for name, verb in (("score", "scoring"), ("translate", "translating")):
        if f"{name}_over_train_step" in report:
            console.print(
                f"{verb} {report['sample_batch']} images takes "
                f"{report[f'{name}_over_train_step']:.3g}x one training step"
            )
    if "peak_rss_mb" in report:
        console.print(
            f"peak resident memory of the process: {report['peak_rss_mb']:.0f} MiB "
            "(RSS per operation: the running high-water mark)"
        )


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"
