"""CUDA-graph capture details that only a GPU would show, checked on the CPU: the capture's
device and stream, a capture that records nothing, and graphs shared between grad modes."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from gentool_flows.graphs import GraphCache
from gentool_flows.maf import MAF


def double_and_sum(x):
    return 2 * x, x.sum(-1)


class Replay:
    """A replay reruns the pass into the captured outputs; ``empty``: does nothing, as a
    graph captured on another GPU's stream."""

    def __init__(self, fn, static, outputs, empty: bool) -> None:
        self.fn, self.static, self.outputs, self.empty = fn, static, outputs, empty

    def replay(self) -> None:
        if not self.empty:
            for out, new in zip(self.outputs, self.fn(self.static), strict=True):
                out.copy_(new)


class RecordingCache(GraphCache):
    """GraphCache on the CPU, with the CUDA calls replaced."""

    device_type = "cpu"

    def __init__(self, empty: bool = False) -> None:
        super().__init__()
        self.empty, self.captures = empty, 0

    def _warm_up(self, fn, static):
        return tuple(fn(static))

    def _record(self, fn, static):
        self.captures += 1
        # As a capture on the wrong stream: the pass ran eagerly, its outputs hold its numbers.
        outputs = tuple(fn(static))
        return Replay(fn, static, outputs, self.empty), outputs


def test_a_capture_that_recorded_nothing_is_declined(capsys):
    cache = RecordingCache(empty=True)
    x, other = torch.randn(4, 3), torch.randn(4, 3)
    cache(double_and_sum, x, signature=0)
    # Every later call must give its own numbers, never the capture input's again.
    got = cache(double_and_sum, other, signature=0)
    assert all(torch.equal(a, b) for a, b in zip(got, double_and_sum(other), strict=True))
    assert "did not reproduce" in capsys.readouterr().err


def test_a_graph_captured_in_inference_mode_serves_a_no_grad_call():
    cache = RecordingCache()
    x = torch.randn(4, 3)
    with torch.inference_mode():
        cache(double_and_sum, x, signature=0)
    with torch.no_grad():  # writing an inference-mode static input here would raise
        got = cache(double_and_sum, 3 * x, signature=0)
    assert torch.equal(got[0], 6 * x)
    with torch.inference_mode():
        assert torch.equal(cache(double_and_sum, x, signature=0)[0], 2 * x)
    assert cache.captures == 2  # one graph per mode, each reused


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's graph calls replaced by recorders; the capture's exit fails as torch's
    does after an error during capture (before it restores the stream)."""
    calls: list[tuple] = []
    previous = object()

    class Stream:
        def __init__(self, device=None) -> None:
            self.device = device
            calls.append(("stream", device))

    @contextmanager
    def device(which):
        calls.append(("device", which))
        yield

    class Capture:
        def __init__(self, graph, pool=None, stream=None, capture_error_mode="global") -> None:
            calls.append(("graph", stream, capture_error_mode))

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc) -> None:
            raise RuntimeError("operation failed due to a previous error during capture")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: "graph")
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: previous)
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: calls.append(("set", stream)))
    monkeypatch.setattr(torch.cuda, "graph", Capture)
    return calls, previous


def test_the_capture_runs_on_the_inputs_device_and_gives_the_stream_back(fake_cuda):
    calls, previous = fake_cuda
    static = torch.randn(2, 3)  # stands for a tensor on cuda:1 while GPU 0 is current
    with pytest.raises(RuntimeError, match="previous error during capture"):
        GraphCache()._record(double_and_sum, static)
    assert ("stream", static.device) in calls and ("device", static.device) in calls
    (capture,) = [call for call in calls if call[0] == "graph"]
    assert capture[1] is not None and capture[1].device == static.device  # not torch's shared
    assert capture[2] == "thread_local"  # a pinning thread's CUDA calls stay legal
    assert calls[-1] == ("set", previous)  # the stream before the capture is current again


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_graphs_on_a_gpu_that_is_not_current():
    torch.manual_seed(0)
    flow = MAF(16, 2, (32,)).to("cuda:1").eval()
    flow.cuda_graphs = True
    with torch.inference_mode():
        for scale in (1.0, 2.0, 3.0):  # a capture, then replays with new inputs
            z = scale * torch.randn(8, 16, device="cuda:1")
            graphed = flow.solve(z)[0]
            flow.cuda_graphs = False
            assert torch.allclose(graphed, flow.solve(z)[0], atol=1e-5)
            flow.cuda_graphs = True
    (entry,) = flow._graphs._entries.values()
    assert entry.graph is not None
