"""What every command shares about running torch: devices, seeding, precision, RNG state.

Training, scoring, sampling, translation and bench all choose a device, seed the global
generators, and (for training and bench) set the process-wide backend switches of a
precision. A run's RNG state is saved with its resume state and restored from it; side
computations (validation, preview grids, a teacher's noise) draw from a forked stream so
that the training stream is the same whether or not they ran.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from gentool.checks import PRECISIONS, check_precision
from gentool.config import env_flag
from gentool.errors import UserError

__all__ = [
    "PRECISIONS",
    "backend_settings",
    "check_precision",
    "forked_rng",
    "precision_context",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "to_device",
]


def resolve_device(text: str) -> torch.device:
    """``auto`` takes CUDA when there is a GPU; a CUDA device that is missing is an error."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    # torch also names devices gentool does not run on (meta, xla, mps on Linux): they would
    # fail later, with a traceback, in the first tensor op.
    mps = device is not None and device.type == "mps" and torch.backends.mps.is_available()
    if device is None or not (device.type in ("cpu", "cuda") or mps):
        raise UserError(f"--device: {text!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {text}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, torch's (every device's) and NumPy's global generators."""
    random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def precision_context(precision: str, device: torch.device) -> Any:
    """The arithmetic a training step runs in: bf16 autocast (no gradient scaler needed)
    or nothing; the TF32 switches are set for the whole run by :func:`backend_settings`."""
    check_precision(precision)
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def backend_settings(precision: str, device: torch.device) -> Iterator[None]:
    """The process-wide switches of one training run on ``device``, put back afterwards.

    On CUDA: the run's GPU is the current device (pinned batches, streams and graph
    captures go there, not to GPU 0); ``tf32`` lets matmuls and convolutions use
    TensorFloat-32 and the other precisions do not (weights stay fp32); cuDNN autotunes
    its convolutions for the fixed image sizes. ``GENTOOL_DETERMINISTIC`` asks for
    deterministic algorithms instead, with the cuBLAS workspace setting CUDA requires;
    an operation with no deterministic CUDA kernel (CycleGAN's reflection padding,
    backwards) warns rather than stops the run. A library caller's settings, and the next
    run in the same process, are unaffected.
    """
    check_precision(precision)
    cuda = device.type == "cuda"
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        if env_flag("GENTOOL_DETERMINISTIC"):
            if cuda:  # without it the first cuBLAS matmul raises (CUDA >= 10.2)
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=cuda)
        elif cuda:
            torch.backends.cudnn.benchmark = True
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            torch.backends.cudnn.allow_tf32 = precision == "tf32"
        with torch.cuda.device(device) if cuda else nullcontext():
            yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
            deterministic,
            warn_only,
        ) = saved
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or dicts, lists and tuples of them) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@contextmanager
def forked_rng(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block on a fork of the global RNG (and of ``device``'s, on a GPU), seeded with
    ``seed`` (None: left as it is); the stream outside the block is untouched.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> expected = torch.rand(1)
        >>> _ = torch.manual_seed(0)
        >>> with forked_rng(123):
        ...     _ = torch.rand(3)
        >>> torch.equal(torch.rand(1), expected)
        True
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        # The training GPU's generator only: reading every GPU's would open a CUDA context
        # on each (memory on GPUs the run does not use; an error where they are held in
        # exclusive mode), and a CPU run touches none.
        state["cuda"] = torch.cuda.get_rng_state(device)
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]
    except ImportError:
        pass
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda_state = state.get("cuda")
    if device.type == "cuda" and cuda_state is not None:
        if isinstance(cuda_state, list):  # older resume states hold every GPU's, by index
            index = device.index if device.index is not None else torch.cuda.current_device()
            cuda_state = cuda_state[index] if index < len(cuda_state) else None
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
