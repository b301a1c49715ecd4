"""The change-of-variables facts the flows rest on, checked numerically (the report's examples).

p_X(x) = p_Z(f^-1(x)) |det d f^-1(x) / dx|
"""

import math

import torch
from torch import nn
from torch.distributions import AffineTransform, ExpTransform, TransformedDistribution, Uniform

from gentool_flows.autoregressive import MaskedAffineAutoregressive

N = 400_000


def histogram_density(samples: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    counts = torch.histogram(samples, bins=edges).hist
    return counts / (len(samples) * (edges[1:] - edges[:-1]))


def test_affine_map_of_a_uniform():
    # Z ~ U(0, 1), X = 2 Z + 1  =>  p_X(x) = p_Z((x - 1) / 2) * 1/2 = 1/2 on [1, 3].
    z = Uniform(0.0, 1.0)
    x = TransformedDistribution(z, AffineTransform(loc=1.0, scale=2.0))
    points = torch.linspace(1.01, 2.99, 50)
    assert torch.allclose(x.log_prob(points).exp(), torch.full((50,), 0.5))
    by_hand = z.log_prob((points - 1.0) / 2.0).exp() * 0.5
    assert torch.allclose(by_hand, torch.full((50,), 0.5))

    torch.manual_seed(0)
    samples = x.sample((N,))
    assert samples.min() >= 1.0 and samples.max() <= 3.0
    density = histogram_density(samples, torch.linspace(1.0, 3.0, 21))
    assert torch.allclose(density, torch.full((20,), 0.5), atol=0.02)


def test_exponential_map_of_a_uniform():
    # Z ~ U(0, 2), X = e^Z  =>  p_X(x) = p_Z(log x) * |d log x / dx| = 1 / (2x) on [1, e^2].
    z = Uniform(0.0, 2.0)
    x = TransformedDistribution(z, ExpTransform())
    points = torch.linspace(1.01, math.e**2 - 0.01, 50)
    expected = 1.0 / (2.0 * points)
    assert torch.allclose(x.log_prob(points).exp(), expected)
    by_hand = z.log_prob(torch.log(points)).exp() / points
    assert torch.allclose(by_hand, expected)

    # It is a density: it integrates to one over [1, e^2] (trapezoid rule).
    grid = torch.linspace(1.0, math.e**2, 100_001, dtype=torch.float64)
    assert abs(torch.trapezoid(1.0 / (2.0 * grid), grid).item() - 1.0) < 1e-8

    torch.manual_seed(0)
    samples = x.sample((N,))
    assert samples.min() >= 1.0 and samples.max() <= math.e**2
    edges = torch.linspace(1.0, math.e**2, 31)
    density = histogram_density(samples, edges)
    # The exact mean density of each bin: its probability (log b - log a) / 2 over its width.
    exact = (torch.log(edges[1:]) - torch.log(edges[:-1])) / 2.0 / (edges[1:] - edges[:-1])
    assert torch.allclose(density, exact, rtol=0.05)


def coupling_jacobian(f, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(f, x)


def test_additive_coupling_has_unit_determinant():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).double()

    def additive(x: torch.Tensor) -> torch.Tensor:  # z1 = x1, z2 = x2 + m(x1)
        x1, x2 = x[:3], x[3:]
        return torch.cat((x1, x2 + m(x1)))

    for _ in range(5):
        jacobian = coupling_jacobian(additive, torch.randn(6, dtype=torch.float64))
        assert abs(torch.det(jacobian).item() - 1.0) < 1e-12


def test_affine_coupling_determinant_is_the_product_of_scales():
    torch.manual_seed(0)
    log_s = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    t = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 3)).double()

    def affine(x: torch.Tensor) -> torch.Tensor:  # z1 = x1, z2 = x2 * s(x1) + t(x1)
        x1, x2 = x[:3], x[3:]
        return torch.cat((x1, x2 * torch.exp(log_s(x1)) + t(x1)))

    for _ in range(5):
        x = torch.randn(6, dtype=torch.float64)
        jacobian = coupling_jacobian(affine, x)
        s = torch.exp(log_s(x[:3]))
        assert torch.allclose(torch.det(jacobian), s.prod(), rtol=1e-12)


def test_lower_triangular_determinant_is_the_product_of_the_diagonal():
    torch.manual_seed(0)
    lower = torch.randn(7, 7, dtype=torch.float64).tril()
    assert torch.allclose(torch.det(lower), lower.diagonal().prod(), rtol=1e-12)

    # An autoregressive layer in natural order has exactly such a Jacobian, with diagonal
    # s_i = exp(log s_i): hence log |det J| = sum_i log s_i, with no D x D determinant.
    layer = MaskedAffineAutoregressive(7, hidden_features=(16,)).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(0.0, 0.3)
    x = torch.randn(7, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v)[0], x)
    assert torch.equal(jacobian, jacobian.tril())
    _, log_scale = layer.shift_and_log_scale(x)
    assert torch.allclose(jacobian.diagonal(), log_scale.exp(), rtol=1e-12)
    assert torch.allclose(torch.linalg.slogdet(jacobian).logabsdet, layer(x)[1], rtol=1e-12)
