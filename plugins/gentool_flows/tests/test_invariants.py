"""The invariants every flow of gentool_flows must keep, checked in float64 on CPU."""

import io

import pytest
import torch

from gentool_flows.autoregressive import MaskedAffineAutoregressive
from gentool_flows.batchnorm import BatchNorm
from gentool_flows.iaf import IAF
from gentool_flows.maf import MAF

D = 5


def made_density(features: int) -> MAF:
    return MAF(features, num_layers=1, hidden_features=(16,), batch_norm=False)


FLOWS = {
    "made": made_density,
    "maf": lambda d: MAF(d, num_layers=3, hidden_features=(16, 16)),
    "maf-random-no-bn": lambda d: MAF(d, 3, (16,), order="random", batch_norm=False, seed=3),
    "maf-tanh-unclamped": lambda d: MAF(d, 2, (7,), activation="tanh", log_scale_clamp=0.0),
    "maf-softplus": lambda d: MAF(d, 3, (16,), scale="softplus"),
    "iaf": lambda d: IAF(d, num_layers=3, hidden_features=(16, 16)),
    "iaf-softplus": lambda d: IAF(d, 2, (16,), scale="softplus"),
    "iaf-random-elu": lambda d: IAF(d, 2, (9, 4), order="random", activation="elu", seed=1),
}


def build(name: str) -> torch.nn.Module:
    """A flow with random weights (not the near-identity start) and warmed-up batch norms."""
    torch.manual_seed(0)
    flow = FLOWS[name](D).double()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.normal_(0.0, 0.3)
        flow.train()
        for layer in flow.layers:
            if isinstance(layer, BatchNorm):
                for _ in range(20):
                    layer(2.0 + 3.0 * torch.randn(64, D, dtype=torch.float64))
    return flow.eval()


@pytest.mark.parametrize("name", FLOWS)
def test_log_prob_shape_and_gradients(name):
    flow = build(name).train()
    x = torch.randn(16, D, dtype=torch.float64)
    log_p = flow.log_prob(x)
    assert log_p.shape == (16,) and torch.isfinite(log_p).all()
    log_p.mean().backward()
    grads = [p.grad for p in flow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", FLOWS)
def test_invertible(name):
    flow = build(name)
    a = torch.randn(32, D, dtype=torch.float64)
    b, _ = flow(a)
    assert torch.allclose(flow.inverse(b), a, atol=1e-4)
    assert torch.allclose(flow.inverse_reference(b), a, atol=1e-4)
    with torch.no_grad():  # the buffered (no autograd) path of the fast solve
        assert torch.allclose(flow.inverse(b), a, atol=1e-4)


@pytest.mark.parametrize("name", FLOWS)
def test_log_det_matches_brute_force_jacobian(name):
    flow = build(name)
    a = torch.randn(4, D, dtype=torch.float64)
    _, log_det = flow(a)
    for row, expected in zip(a, log_det, strict=True):
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], row)
        assert torch.allclose(torch.linalg.slogdet(jacobian).logabsdet, expected, atol=1e-8)


@pytest.mark.parametrize("name", FLOWS)
def test_log_prob_is_change_of_variables(name):
    flow = build(name)
    x = torch.randn(8, D, dtype=torch.float64)
    base = torch.distributions.Normal(0.0, 1.0)
    if isinstance(flow, IAF):
        z = flow.inverse(x)
        expected = base.log_prob(z).sum(-1) - flow(z)[1]
    else:
        z, log_det = flow(x)
        expected = base.log_prob(z).sum(-1) + log_det
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-8)


@pytest.mark.parametrize("name", FLOWS)
def test_sample_shape(name):
    flow = build(name)
    for temperature in (1.0, 0.5):
        x = flow.sample(7, temperature=temperature)
        assert x.shape == (7, D) and x.dtype == torch.float64 and torch.isfinite(x).all()
        assert not x.is_inference()  # usable in later autograd code


@pytest.mark.parametrize("name", FLOWS)
def test_state_dict_round_trip(name):
    flow = build(name)
    x = torch.randn(8, D, dtype=torch.float64)
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # different initial weights, and a different random order
    other = FLOWS[name](D).double()
    other.load_state_dict(torch.load(buffer, weights_only=True))
    other.eval()
    assert torch.equal(other.log_prob(x), flow.log_prob(x))
    z = torch.randn(8, D, dtype=torch.float64)
    assert torch.equal(other.inverse(z), flow.inverse(z))


def test_masks_are_not_saved_but_rebuilt_from_degrees():
    flow = MAF(D, 2, (8,), order="random", batch_norm=False, seed=1)
    state = flow.state_dict()
    assert not any(key.endswith(".mask") for key in state)
    other = MAF(D, 2, (8,), order="random", batch_norm=False, seed=2)
    assert not torch.equal(other.layers[0].made.degrees, flow.layers[0].made.degrees)
    other.load_state_dict(state)
    for mine, theirs in zip(flow.modules(), other.modules(), strict=True):
        if hasattr(mine, "mask"):
            assert torch.equal(mine.mask, theirs.mask)


def test_single_transform_without_hidden_layers():
    torch.manual_seed(0)
    t = MaskedAffineAutoregressive(D, hidden_features=(), order="reversed").double()
    with torch.no_grad():
        for parameter in t.parameters():
            parameter.normal_(0.0, 0.5)
    u = torch.randn(6, D, dtype=torch.float64)
    y, log_det = t(u)
    back, back_log_det = t.inverse(y)
    assert torch.allclose(back, u, atol=1e-10)
    assert torch.allclose(back_log_det, log_det, atol=1e-10)


def test_unbatched_input():
    flow = build("maf")
    x = torch.randn(D, dtype=torch.float64)
    z, log_det = flow(x)
    assert z.shape == (D,) and log_det.shape == ()
    assert torch.allclose(flow.inverse(z), x, atol=1e-8)
