"""The coupling facts, checked against the brute-force Jacobian (float64, CPU).

Additive coupling: det = 1 (log-det 0). Affine coupling: the Jacobian is triangular with
s(x1) on the transformed part of the diagonal, so log|det| = sum log s(x1).
"""

import pytest
import torch
from torch.autograd.functional import jacobian

from gentool_realnvp.coupling import AdditiveCoupling, AffineCoupling, RealNVP, base_mask

SHAPE = (1, 4, 4)  # a 16-dimensional "image": the full Jacobian is 16 x 16
MASKS = ["checkerboard", "halves"]


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """float64, with every weight random: a fresh coupling starts as the identity."""
    torch.manual_seed(0)
    module = module.double()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.3)
    return module


def _brute_force_jacobian(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return jacobian(lambda v: layer(v.unsqueeze(0))[0].squeeze(0), x)


@pytest.mark.parametrize("mask_kind", MASKS)
def test_additive_coupling_log_det_is_zero(mask_kind):
    mask = base_mask(mask_kind, SHAPE)
    layer = _randomised(AdditiveCoupling(mask, hidden=(32, 32)))
    x = torch.randn(mask.numel(), dtype=torch.float64)
    _, log_det = layer(x.unsqueeze(0))
    _, brute = torch.linalg.slogdet(_brute_force_jacobian(layer, x))
    assert log_det.item() == 0.0
    assert brute.item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("mask_kind", MASKS)
def test_affine_coupling_log_det_is_sum_log_s(mask_kind):
    mask = base_mask(mask_kind, SHAPE)
    layer = _randomised(AffineCoupling(mask, hidden=(32, 32)))
    x = torch.randn(mask.numel(), dtype=torch.float64)
    _, log_det = layer(x.unsqueeze(0))
    log_s, _ = layer.log_scale_and_shift((x * mask).unsqueeze(0))
    jac = _brute_force_jacobian(layer, x)
    kept, free = mask.bool(), ~mask.bool()

    assert log_s.abs().sum() > 1.0  # the scales are far from 1: the test has teeth
    torch.testing.assert_close(log_det, log_s.sum(-1))
    torch.testing.assert_close(torch.linalg.slogdet(jac)[1], log_det[0])
    # Triangular structure: z1 = x1 ignores x2, and z2 depends on x2 only element-wise,
    # with slope s(x1) on the diagonal.
    torch.testing.assert_close(jac[kept][:, free], torch.zeros(kept.sum(), free.sum()).double())
    block = jac[free][:, free]
    torch.testing.assert_close(block, torch.diag(log_s[0, free].exp()))


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_flow_log_det_and_inverse(coupling):
    flow = _randomised(
        RealNVP(base_mask("checkerboard", SHAPE), layers=4, hidden=(32,), coupling=coupling)
    )
    x = torch.randn(3, 16, dtype=torch.float64)
    z, log_det = flow(x)
    torch.testing.assert_close(flow.inverse(z), x)
    for row in range(3):
        _, brute = torch.linalg.slogdet(_brute_force_jacobian(flow, x[row]))
        torch.testing.assert_close(log_det[row], brute)


def test_alternating_masks_transform_every_dimension():
    flow = RealNVP(base_mask("checkerboard", SHAPE), layers=2, hidden=(8,))
    first, second = (layer.mask for layer in flow.transforms)
    torch.testing.assert_close(first + second, torch.ones(16))


def test_sample_shape_and_temperature():
    flow = RealNVP(base_mask("halves", SHAPE), layers=2, hidden=(8,))
    torch.manual_seed(0)
    cold = flow.sample(2000, temperature=0.5)
    assert cold.shape == (2000, 16)
    # A fresh flow is the identity, so samples are the base noise scaled by the temperature.
    assert cold.std().item() == pytest.approx(0.5, rel=0.05)
