"""Opt-in CUDA graphs: capture a flow's sequential pass once, then replay it in one launch."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GraphCache"]


@dataclass
class _Entry:
    signature: Hashable
    graph: torch.cuda.CUDAGraph
    input: Tensor
    outputs: tuple[Tensor, ...]
    # The captured function, and with it every tensor it closed over (index tensors made
    # outside the capture): the graph reads them by address, so they must stay alive.
    fn: Callable[[Tensor], tuple[Tensor, ...]]


class GraphCache:
    """Captured CUDA graphs of ``fn(x)``, one per input shape and dtype.

    A sequential flow pass on the GPU is thousands of tiny kernels, so its time goes to
    launching them; a replayed graph launches them all at once. A graph reads the weights
    through fixed addresses: in-place updates (optimizer steps, ``load_state_dict``) are
    seen, but moved or replaced tensors are not, so the caller passes a ``signature`` (the
    tensors' addresses and anything else baked into the graph) and a changed signature
    triggers a new capture. Graphs hold GPU memory; :meth:`clear` frees them.

    ``fn`` must not synchronise with the host (no ``.item()``, ``.tolist()``) and must
    return a tuple of tensors; outputs are cloned, since the next replay overwrites them.
    The cache keeps ``fn`` alive with its graph, so tensors it closes over stay valid.
    """

    def __init__(self, warmup: int = 2) -> None:
        self.warmup = warmup
        self._entries: dict[Hashable, _Entry] = {}

    def clear(self) -> None:
        self._entries.clear()

    def __getstate__(self) -> dict:
        # Graphs are bound to this process's GPU memory: copies and pickles start empty.
        return {"warmup": self.warmup, "_entries": {}}

    def __call__(
        self, fn: Callable[[Tensor], tuple[Tensor, ...]], x: Tensor, signature: Hashable
    ) -> tuple[Tensor, ...]:
        if x.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA tensor")
        key = (tuple(x.shape), x.dtype, x.device)
        entry = self._entries.get(key)
        if entry is None or entry.signature != signature:
            entry = self._capture(fn, x, signature)
            self._entries[key] = entry
        entry.input.copy_(x)
        entry.graph.replay()
        return tuple(out.clone() for out in entry.outputs)

    def _capture(
        self, fn: Callable[[Tensor], tuple[Tensor, ...]], x: Tensor, signature: Hashable
    ) -> _Entry:
        static = x.clone()
        # Warm-up on a side stream, as torch.cuda.graphs requires (lazy init, allocator).
        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                fn(static)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = fn(static)
        return _Entry(signature, graph, static, tuple(outputs), fn)
