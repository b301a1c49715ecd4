"""Opt-in CUDA graphs: capture a flow's sequential pass once, then replay it in one launch."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["GraphCache"]

Pass = Callable[[Tensor], tuple[Tensor, ...]]


@dataclass
class _Entry:
    signature: Hashable
    #: None when the pass could not be captured or its replay did not give the eager
    #: numbers: the pass then runs eagerly, as without graphs.
    graph: Any
    input: Tensor | None
    outputs: tuple[Tensor, ...]
    # The captured function, and with it every tensor it closed over (index tensors made
    # outside the capture): the graph reads them by address, so they must stay alive.
    fn: Pass


class GraphCache:
    """Captured CUDA graphs of ``fn(x)``, one per input shape, dtype, device and grad mode
    (inference mode or not).

    A sequential flow pass on the GPU is thousands of tiny kernels, so its time goes to
    launching them; a replayed graph launches them all at once. A graph reads the weights
    through fixed addresses: in-place updates (optimizer steps, ``load_state_dict``) are
    seen, but moved or replaced tensors are not, so the caller passes a ``signature`` (the
    tensors' addresses and anything else baked into the graph) and a changed signature
    triggers a new capture. Graphs hold GPU memory; :meth:`clear` frees them.

    Each capture is checked before it is used: its first replay must give the eager pass's
    numbers for the same input (to ``rtol``/``atol``). A pass that fails to capture or to
    match runs eagerly from then on, after one line on stderr, so graphs never change a
    result, only its speed.

    ``fn`` must not synchronise with the host (no ``.item()``, ``.tolist()``, no tensors
    from Python data) and must return a tuple of tensors; outputs are cloned, since the next
    replay overwrites them. The cache keeps ``fn`` alive with its graph, so tensors it
    closes over stay valid.
    """

    #: The device type the graphs run on (a test double may replace it).
    device_type = "cuda"

    def __init__(self, warmup: int = 2, rtol: float = 1e-5, atol: float = 1e-6) -> None:
        if warmup < 1:
            raise ValueError("a capture needs at least one eager warm-up run")
        self.warmup = warmup
        self.rtol = rtol
        self.atol = atol
        self._entries: dict[Hashable, _Entry] = {}

    def clear(self) -> None:
        self._entries.clear()

    def __getstate__(self) -> dict:
        # Graphs are bound to this process's GPU memory: copies and pickles start empty.
        return {**self.__dict__, "_entries": {}}

    def __call__(self, fn: Pass, x: Tensor, signature: Hashable) -> tuple[Tensor, ...]:
        if x.device.type != self.device_type:
            raise ValueError(f"CUDA graphs need a {self.device_type} tensor")
        # A capture under inference mode makes its static input an inference tensor, which
        # a later call outside that mode may not write: one graph per mode.
        key = (tuple(x.shape), x.dtype, x.device, torch.is_inference_mode_enabled())
        entry = self._entries.get(key)
        if entry is None or entry.signature != signature:
            entry = self._capture(fn, x, signature)
            self._entries[key] = entry
        if entry.graph is None:
            return fn(x)
        entry.input.copy_(x)
        entry.graph.replay()
        return tuple(out.clone() for out in entry.outputs)

    def _capture(self, fn: Pass, x: Tensor, signature: Hashable) -> _Entry:
        static = x.clone()
        expected = self._warm_up(fn, static)
        try:
            graph, outputs = self._record(fn, static)
            # A capture that recorded nothing (work sent to another device's stream) leaves
            # its outputs as the eager run filled them: poisoned, only a real replay passes.
            for out in outputs:
                if out.untyped_storage().data_ptr() != static.untyped_storage().data_ptr():
                    out.fill_(math.nan if out.is_floating_point() else 0)
            graph.replay()
        except RuntimeError as err:
            text = str(err).strip()
            self._decline(f"the pass could not be captured ({text.splitlines()[0][:200]})")
            return _Entry(signature, None, None, (), fn)
        if len(outputs) != len(expected) or not all(
            torch.allclose(got, want, self.rtol, self.atol, equal_nan=True)
            for got, want in zip(outputs, expected, strict=False)
        ):
            self._decline("a replay did not reproduce the eager numbers")
            return _Entry(signature, None, None, (), fn)
        return _Entry(signature, graph, static, outputs, fn)

    def _warm_up(self, fn: Pass, static: Tensor) -> tuple[Tensor, ...]:
        """Eager runs on a side stream, as capture requires (lazy init, allocator, cuBLAS
        workspaces); the last one's outputs are what the first replay must reproduce."""
        current = torch.cuda.current_stream(static.device)
        stream = torch.cuda.Stream(device=static.device)
        stream.wait_stream(current)
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                expected = tuple(fn(static))
        current.wait_stream(stream)
        return expected

    def _record(self, fn: Pass, static: Tensor) -> tuple[Any, tuple[Tensor, ...]]:
        graph = torch.cuda.CUDAGraph()
        # A capture stream on the input's own device: torch's shared default one lives on
        # whichever GPU was current when it was first made, and a capture there records
        # nothing of the work on another GPU (cuda:1 while GPU 0 is current).
        # thread_local: a DataLoader's pinning thread may allocate meanwhile; under the
        # default (global) mode its CUDA calls would fail, not this capture.
        stream = torch.cuda.Stream(device=static.device)
        with torch.cuda.device(static.device):
            previous = torch.cuda.current_stream()
            try:
                with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                    outputs = tuple(fn(static))
            finally:
                # A failed capture raises from the graph's exit before it restores the
                # stream: later work would run on the capture stream, unordered with the rest.
                torch.cuda.set_stream(previous)
        return graph, outputs

    @staticmethod
    def _decline(reason: str) -> None:
        from gentool.api import stderr_console

        stderr_console().print(
            f"CUDA graphs off for this pass: {reason}; it runs eagerly (same numbers, slower)",
            highlight=False,
            soft_wrap=True,
        )
