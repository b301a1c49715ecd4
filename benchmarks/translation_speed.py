"""Training speed and peak memory of CycleGAN and Pix2Pix at the report's and the reference's
settings, on the CPU (one thread and torch's default) and on CUDA when there is a GPU.

    python benchmarks/translation_speed.py results.json [--device auto|cpu|cuda]
        [--setups cyclegan-report,cyclegan-reference,pix2pix-reference] [--steps 5]

Each (setup, threads) runs in a fresh subprocess, so its peak resident memory is its own.
A training step is the family's own ``train_step`` on a synthetic batch through
:func:`gentool.bench.time_op`: warm-up first, CUDA synchronised around every clock reading,
the median over the timed steps reported. On CUDA the peak is ``max_memory_allocated``
(tensors only) and cuDNN picks its algorithms once, as ``gentool train`` lets it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

#: name -> (family, image size, hyperparameters as on the command line)
SETUPS: dict[str, tuple[str, int, dict[str, str]]] = {
    # The course report: IMAGE_SIZE 128, NUM_RESIDUAL_BLOCKS 6, BATCH_SIZE 1.
    "cyclegan-report": ("cyclegan", 128, {"n_blocks": "6", "batch_size": "1"}),
    # The authors' defaults: 256 px crops, resnet_9blocks, batch 1.
    "cyclegan-reference": ("cyclegan", 256, {"n_blocks": "9", "batch_size": "1"}),
    # pix2pix defaults: unet_256, batch norm, batch 1.
    "pix2pix-reference": ("pix2pix", 256, {"generator": "unet", "batch_size": "1"}),
}


def measure(setup: str, device_text: str, threads: int | None, steps: int, warmup: int) -> dict:
    """One setup in this process: build the model, time its training step."""
    import torch

    from gentool.bench import device_name, peak_rss_mb, synthetic_batch, time_op
    from gentool.config import build_config
    from gentool.data.base import DataInfo
    from gentool.registry import get_registry
    from gentool.runtime import resolve_device, seed_everything

    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(device_text)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    family, size, flags = SETUPS[setup]
    spec = get_registry().family(family)
    config = build_config(spec.config, flags)
    data = DataInfo(spec.data_kind, 3, size, size, source="synthetic")
    rss_start = peak_rss_mb()
    seed_everything(0)
    model = spec.load_model_class()(config, data, device)
    model.configure_training()
    batch = synthetic_batch(model, config.batch_size)

    def train_step() -> None:
        model.train()
        model.train_step(batch)

    timing = time_op(train_step, device, steps, warmup=warmup)
    result: dict[str, Any] = {
        "setup": setup,
        "family": family,
        "image_size": size,
        "hyperparameters": flags,
        "parameters": sum(p.numel() for p in model.networks.parameters()),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "step_median_s": timing["median_s"],
        "step_runs_s": timing["runs_s"],
        "iterations_per_s": 1 / timing["median_s"],
    }
    if device.type == "cuda":
        result["peak_memory_mb"] = timing["peak_memory_mb"]
    else:
        result["peak_rss_mb"] = peak_rss_mb()
        result["rss_before_model_mb"] = rss_start
    return result


def _run_worker(setup: str, device: str, threads: int | None, steps: int, warmup: int) -> dict:
    command = [sys.executable, __file__, "--worker", setup, "--device", device]
    command += ["--steps", str(steps), "--warmup", str(warmup)]
    if threads is not None:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"setup": setup, "threads": threads, "error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, help="JSON file for the results")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated names")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps [CPU 1, CUDA 3]")
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:  # one measurement, JSON on stdout
        warmup = 1 if args.warmup is None else args.warmup
        print(json.dumps(measure(args.worker, args.device, args.threads, args.steps, warmup)))
        return 0
    if args.output is None:
        parser.error("the output JSON path is required")
    unknown = [s for s in args.setups.split(",") if s not in SETUPS]
    if unknown:
        parser.error(f"unknown setup(s) {unknown}; choose from {', '.join(SETUPS)}")

    import torch

    from gentool.bench import device_name
    from gentool.runtime import resolve_device

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    # On CUDA the CPU thread count hardly matters; on the CPU it is the main lever.
    thread_settings: list[int | None] = [None] if cuda else [1, None]
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu": device_name(torch.device("cpu")),
        "cpu_count": os.cpu_count(),
        "default_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_before": list(os.getloadavg()),
        "results": [],
    }
    for setup in args.setups.split(","):
        for threads in thread_settings:
            label = "default" if threads is None else threads
            print(f"{setup}: {device}, threads {label} ...", file=sys.stderr, flush=True)
            result = _run_worker(setup, str(device), threads, args.steps, warmup)
            report["results"].append(result)
            if "error" in result:
                print(f"  failed: {result['error']}", file=sys.stderr, flush=True)
            else:
                memory = result.get("peak_memory_mb", result.get("peak_rss_mb"))
                print(
                    f"  {result['step_median_s'] * 1e3:.1f} ms/step "
                    f"({result['iterations_per_s']:.2f} it/s), peak {memory:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            args.output.parent.mkdir(parents=True, exist_ok=True)
            report["load_average_after"] = list(os.getloadavg())
            args.output.write_text(json.dumps(report, indent=2) + "\n")  # partial results too
    return 0


if __name__ == "__main__":
    sys.exit(main())
