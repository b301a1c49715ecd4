"""CUDA-graph sampling, checked without a GPU: what is captured must be capturable, and the
cache must hand back the eager numbers whatever the capture does."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gentool_flows.graphs import GraphCache
from gentool_flows.iaf import IAF
from gentool_flows.maf import MAF

# Operators a CUDA graph capture cannot hold: reads back to the host (a sync, or a shape
# known only on the host) and tensors made from Python data (a copy from host memory).
HOST_BOUND = {
    "item",
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "_unique2",
    "unique_consecutive",
    "lift_fresh",
    "lift_fresh_copy",
}


class OperatorLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_operator_log_sees_host_bound_operators():
    x = torch.randn(3)
    with OperatorLog() as log:
        x.sum().item()
        x.new_tensor([1.0])
    assert "lift_fresh" in log.names and log.names & {"item", "_local_scalar_dense"}


@pytest.mark.parametrize("family", [MAF, IAF])
@pytest.mark.parametrize("scale", ["exp", "softplus"])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_the_captured_solve_never_goes_back_to_the_host(family, scale, mode):
    torch.manual_seed(0)
    flow = family(6, num_layers=3, hidden_features=(8, 8), order="random", scale=scale).eval()
    plans = flow._plans()  # computed outside the capture, as GraphCache's caller does
    y = torch.randn(4, 6)
    with mode(), OperatorLog() as log:
        flow._solve(y, plans)
    assert not log.names & HOST_BOUND, sorted(log.names & HOST_BOUND)


class FakeGraph:
    """Records nothing; a replay reruns the pass into the captured output tensors."""

    def __init__(self, fn, static, outputs, corrupt: bool) -> None:
        self.fn, self.static, self.outputs, self.corrupt = fn, static, outputs, corrupt

    def replay(self) -> None:
        for out, new in zip(self.outputs, self.fn(self.static), strict=True):
            out.copy_(new + 1.0 if self.corrupt else new)


class FakeCache(GraphCache):
    """GraphCache with the CUDA calls replaced, on the CPU."""

    device_type = "cpu"

    def __init__(self, fail: bool = False, corrupt: bool = False) -> None:
        super().__init__()
        self.fail, self.corrupt, self.captures = fail, corrupt, 0

    def _warm_up(self, fn, static):
        return tuple(fn(static))

    def _record(self, fn, static):
        self.captures += 1
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        outputs = tuple(out.clone() for out in fn(static))
        return FakeGraph(fn, static, outputs, self.corrupt), outputs


def double_and_sum(x):
    return 2 * x, x.sum(-1)


def test_replays_give_the_pass_numbers_and_recapture_on_a_new_signature():
    cache = FakeCache()
    x, other = torch.randn(4, 3), torch.randn(4, 3)
    for value in (x, other, x):
        got = cache(double_and_sum, value, signature="weights-v1")
        assert all(torch.equal(a, b) for a, b in zip(got, double_and_sum(value), strict=True))
    assert cache.captures == 1
    cache(double_and_sum, torch.randn(2, 3), signature="weights-v1")  # another shape
    assert cache.captures == 2
    cache(double_and_sum, x, signature="weights-v2")  # moved weights: capture again
    assert cache.captures == 3
    first = cache(double_and_sum, x, signature="weights-v2")[0]
    first.zero_()  # callers own their outputs: the next replay is not affected
    assert torch.equal(cache(double_and_sum, x, signature="weights-v2")[0], 2 * x)


@pytest.mark.parametrize(
    ("kind", "message"),
    [("fail", "could not be captured (operation not permitted"), ("corrupt", "did not reproduce")],
)
def test_a_pass_that_cannot_be_graphed_runs_eagerly_after_one_line(kind, message, capsys):
    cache = FakeCache(**{kind: True})
    x = torch.randn(4, 3)
    for _ in range(3):
        got = cache(double_and_sum, x, signature=0)
        assert all(torch.equal(a, b) for a, b in zip(got, double_and_sum(x), strict=True))
    assert cache.captures == 1  # declined once, not retried on every call
    err = capsys.readouterr().err
    assert err.count("CUDA graphs off") == 1 and message in err


def test_graphs_refuse_tensors_on_another_device():
    with pytest.raises(ValueError, match="cuda tensor"):
        GraphCache()(double_and_sum, torch.randn(2, 3), signature=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", [MAF, IAF])
@pytest.mark.parametrize("scale", ["exp", "softplus"])
def test_cuda_graphs_are_used_and_match_eager(family, scale, capsys):
    torch.manual_seed(0)
    flow = family(16, num_layers=3, hidden_features=(32,), scale=scale).cuda().eval()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.normal_(0.0, 0.1)
    y = torch.randn(8, 16, device="cuda")
    with torch.inference_mode():
        eager = flow.solve(y)
        flow.cuda_graphs = True
        for _ in range(2):  # a capture, then a replay
            graphed = flow.solve(y)
            assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(graphed, eager, strict=True))
    (entry,) = flow._graphs._entries.values()
    assert entry.graph is not None, capsys.readouterr().err  # captured, not declined
