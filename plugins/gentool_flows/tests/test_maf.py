"""MAF: the fast sequential sampler equals the plain loop; batch norm; clamping; CUDA graphs."""

import math

import pytest
import torch

from gentool_flows.autoregressive import MaskedAffineAutoregressive
from gentool_flows.batchnorm import BatchNorm
from gentool_flows.maf import MAF


def randomised(flow: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.normal_(0.0, std)
    return flow.eval()


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize(
    ("order", "scale"), [("natural", "exp"), ("random", "exp"), ("natural", "softplus")]
)
def test_fast_sampler_equals_plain_loop(dtype, tolerance, order, scale):
    torch.manual_seed(0)
    flow = MAF(20, 3, (64, 48), order=order, seed=2, scale=scale)
    flow = randomised(flow.to(dtype), std=0.1)
    z = flow.noise(50, generator=torch.Generator().manual_seed(7))
    expected = flow.inverse_reference(z)
    with torch.inference_mode():
        fast = flow.inverse(z)
    assert torch.allclose(fast, expected, rtol=tolerance, atol=tolerance)
    # sample() draws the same noise from the same generator and runs the fast path.
    sampled = flow.sample(50, generator=torch.Generator().manual_seed(7))
    assert torch.equal(sampled, fast)


def test_fast_sampler_handles_fewer_units_than_degrees():
    # 30 features but 8 hidden units: some degrees have no units at all.
    torch.manual_seed(0)
    flow = randomised(MAF(30, 2, (8, 12), batch_norm=False).double())
    z = torch.randn(5, 30, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(flow.inverse(z), flow.inverse_reference(z), atol=1e-10)


@pytest.mark.parametrize("scale", ["exp", "softplus"])
def test_fast_inverse_gradients_equal_plain_loop_gradients(scale):
    torch.manual_seed(0)
    t = randomised(MaskedAffineAutoregressive(6, (12, 12), scale=scale).double())
    y = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    grads = []
    for solve in (t.inverse, t.inverse_reference):
        u, log_det = solve(y)
        loss = (u.sin().sum() + log_det.sum()) * 1.0
        grads.append(torch.autograd.grad(loss, [y, *t.parameters()]))
    for fast, plain in zip(*grads, strict=True):
        assert torch.allclose(fast, plain, atol=1e-10)


def test_log_scale_is_clamped():
    t = MaskedAffineAutoregressive(3, (8,), log_scale_clamp=2.0)
    with torch.no_grad():
        t.made[-1].bias.fill_(10.0)
    u = torch.randn(4, 3)
    _, log_det = t(u)
    assert torch.allclose(log_det, torch.full((4,), 6.0))
    _, fast_log_det = t.inverse(t(u)[0])
    assert torch.allclose(fast_log_det, log_det)


def test_softplus_scale_starts_at_the_identity_and_stays_above_its_floor():
    t = MaskedAffineAutoregressive(3, (8,), scale="softplus")
    with torch.no_grad():
        t.made[-1].weight.zero_()
        t.made[-1].bias.zero_()
    u = torch.randn(4, 3)
    y, log_det = t(u)
    assert torch.allclose(y, u, atol=1e-6) and torch.allclose(log_det, torch.zeros(4), atol=1e-6)
    with torch.no_grad():
        t.made[-1].bias[3:].fill_(-100.0)  # scales softplus(-100) + 1e-3: the floor
    _, log_det = t(u)
    assert torch.allclose(log_det, torch.full((4,), 3 * math.log(1e-3)), rtol=1e-4)
    assert torch.allclose(t.inverse(t(u)[0])[0], u, atol=1e-4)


def test_batch_norm_is_invertible_with_correct_log_det_in_eval_mode():
    torch.manual_seed(0)
    bn = BatchNorm(4).double()
    with torch.no_grad():
        bn.log_gamma.normal_()
        bn.beta.normal_()
        for _ in range(50):
            bn(5.0 + 2.0 * torch.randn(128, 4, dtype=torch.float64))
    assert torch.allclose(bn.running_mean, torch.full((4,), 5.0, dtype=torch.float64), atol=0.3)
    bn.eval()
    x = torch.randn(10, 4, dtype=torch.float64)
    z, log_det = bn(x)
    back, inverse_log_det = bn.inverse(z)
    assert torch.allclose(back, x, atol=1e-12)
    assert torch.allclose(inverse_log_det, log_det)
    jacobian = torch.autograd.functional.jacobian(lambda v: bn(v[None])[0][0], x[0])
    assert torch.allclose(torch.linalg.slogdet(jacobian).logabsdet, log_det[0])


def test_batch_norm_uses_batch_statistics_in_training():
    bn = BatchNorm(3)
    x = 4.0 + 2.0 * torch.randn(256, 3)
    z, log_det = bn(x)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(3), atol=1e-3)
    assert torch.allclose(log_det, -0.5 * torch.log(x.var(0, unbiased=False) + 1e-5).sum())
    # Gradients flow through the batch statistics.
    x.requires_grad_(True)
    bn(x)[0][:, 0].square().sum().backward()
    assert x.grad is not None


def test_maf_structure():
    flow = MAF(6, num_layers=3, hidden_features=(8,), batch_norm=True)
    kinds = [type(layer).__name__ for layer in flow.layers]
    assert kinds == [
        "MaskedAffineAutoregressive",
        "BatchNorm",
        "MaskedAffineAutoregressive",
        "BatchNorm",
        "MaskedAffineAutoregressive",
    ]
    degrees = [layer.made.degrees.tolist() for layer in flow.layers[::2]]
    assert degrees == [list(range(6)), list(range(5, -1, -1)), list(range(6))]
    with pytest.raises(ValueError, match="order"):
        MAF(6, order="reversed")


def test_temperature_scales_the_noise():
    flow = MAF(4, 1, (8,), batch_norm=False)
    with torch.no_grad():
        flow.layers[0].made[-1].weight.zero_()  # an exact identity map
    x = flow.sample(20000, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert abs(x.std().item() - 0.5) < 0.01


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_match_eager():
    torch.manual_seed(0)
    flow = randomised(MAF(16, 3, (32,)), std=0.1).cuda()
    z = torch.randn(8, 16, device="cuda")
    with torch.inference_mode():
        eager, eager_double = flow.inverse(z), flow.inverse(2 * z)
        flow.cuda_graphs = True
        assert torch.allclose(flow.inverse(z), eager, atol=1e-5)
        assert torch.allclose(flow.inverse(2 * z), eager_double, atol=1e-5)  # a replay
        assert len(flow._graphs._entries) == 1
        assert next(iter(flow._graphs._entries.values())).graph is not None  # not declined
        with torch.no_grad():
            flow.layers[0].made[0].weight.mul_(0.5)  # in place: the replay must see it
        graphed = flow.inverse(z)
        flow.cuda_graphs = False
        assert torch.allclose(graphed, flow.inverse(z), atol=1e-5)
        assert not torch.allclose(graphed, eager, atol=1e-3)
