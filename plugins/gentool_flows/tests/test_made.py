"""MADE: masks give output i dependence on the inputs before i in the order, and nothing else."""

import pytest
import torch

from gentool_flows.made import MADE, MaskedLinear, hidden_degrees, input_degrees


def jacobian(made: MADE, x: torch.Tensor) -> torch.Tensor:
    """d(shift, log_scale)/dx as a [2, D, D] tensor."""
    return torch.autograd.functional.jacobian(lambda v: torch.stack(made(v)), x)


@pytest.mark.parametrize("order", ["natural", "reversed", "random"])
@pytest.mark.parametrize("hidden", [(), (3,), (16,), (40, 40), (7, 64, 5)])
def test_jacobian_is_strictly_triangular_in_the_order(order, hidden):
    torch.manual_seed(0)
    features = 6
    made = MADE(features, hidden, order, generator=torch.Generator().manual_seed(4)).double()
    with torch.no_grad():  # the near-zero output layer would hide dependencies
        for parameter in made.parameters():
            parameter.normal_()
    jac = jacobian(made, torch.randn(features, dtype=torch.float64))
    degrees = made.degrees
    # Output i may depend on input j only when j comes strictly before i in the order.
    allowed = degrees[:, None] > degrees[None, :]
    assert (jac[:, ~allowed] == 0).all()
    # With enough units per layer, every allowed connection exists through some path.
    reach = torch.eye(features)
    for layer in made.masked_layers:
        reach = (layer.mask.float() @ reach).clamp(max=1.0)
    paths = reach.unflatten(0, (2, features)) > 0
    assert (paths <= allowed).all()
    if min(hidden, default=features) >= features - 1:
        assert (paths == allowed).all()


def test_natural_order_means_lower_triangular():
    torch.manual_seed(0)
    made = MADE(4, (8,)).double()
    with torch.no_grad():
        for parameter in made.parameters():
            parameter.normal_()
    jac = jacobian(made, torch.randn(4, dtype=torch.float64))
    assert torch.equal(jac, jac.tril(-1))


def test_orders():
    assert input_degrees(4).tolist() == [0, 1, 2, 3]
    assert input_degrees(4, "reversed").tolist() == [3, 2, 1, 0]
    a = input_degrees(10, "random", torch.Generator().manual_seed(0))
    b = input_degrees(10, "random", torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(10))
    assert input_degrees(3, [2, 0, 1]).tolist() == [2, 0, 1]
    with pytest.raises(ValueError):
        input_degrees(3, [0, 0, 1])
    with pytest.raises(ValueError):
        input_degrees(3, "sideways")


def test_hidden_degrees_cover_every_degree_and_are_sorted():
    for features, width in [(64, 512), (64, 63), (784, 1024), (5, 3), (2, 4), (1, 4)]:
        degrees = hidden_degrees(features, width)
        assert degrees.shape == (width,)
        assert (degrees[1:] >= degrees[:-1]).all()
        assert degrees.min() >= 0 and degrees.max() <= max(features - 2, 0)
        if width >= features - 1:
            assert set(degrees.tolist()) == set(range(max(features - 1, 1)))


def test_no_dead_hidden_units():
    # Every hidden unit has at least one input and one output connection.
    made = MADE(10, (32, 32))
    layers = made.masked_layers
    for below, above in zip(layers[:-1], layers[1:], strict=True):
        assert (below.mask.sum(1) > 0).all() and (above.mask.sum(0) > 0).all()


def test_masked_linear_ignores_masked_weights():
    mask = torch.tensor([[True, False, True], [False, False, True]])
    layer = MaskedLinear(mask)
    x = torch.randn(5, 3)
    expected = x @ (layer.weight * mask).t() + layer.bias
    assert torch.allclose(layer(x), expected)
    layer(x).sum().backward()
    assert (layer.weight.grad[~mask] == 0).all()


def test_baked_weight_is_reused_until_a_tensor_changes():
    torch.manual_seed(0)
    layer = MaskedLinear(torch.rand(6, 4) < 0.5)
    x = torch.randn(3, 4)
    with torch.no_grad():
        first = layer(x)
        baked = layer.baked_weight()
        assert torch.equal(baked, layer.masked_weight())
        assert layer.baked_weight() is baked  # no multiply on the next pass
        layer.weight.add_(1.0)  # an optimizer step: the version counter moves
        assert torch.equal(layer.baked_weight(), layer.masked_weight())
        assert not torch.equal(layer(x), first)
        layer.mask.fill_(1.0)  # rebuilt masks (load_state_dict) count too
        assert torch.equal(layer.baked_weight(), layer.weight)
    layer.double()  # a new tensor, and a new dtype
    assert layer.baked_weight().dtype == torch.float64


def test_baked_and_fresh_weights_give_the_same_numbers():
    torch.manual_seed(0)
    made = MADE(5, (16, 16))
    x = torch.randn(7, 5, requires_grad=True)
    trained = torch.stack(made(x))  # weights need gradients: a fresh product
    with torch.inference_mode():
        assert torch.equal(torch.stack(made(x)), trained)
    # A frozen network (a distillation teacher) bakes its weights yet passes gradients to
    # its input, also when the product was baked under inference mode.
    made.requires_grad_(False)
    frozen = torch.stack(made(x))
    assert torch.equal(frozen, trained)
    (grad,) = torch.autograd.grad(frozen.sum(), x)
    (expected,) = torch.autograd.grad(trained.sum(), x)
    assert torch.equal(grad, expected)


def test_starts_near_identity_with_two_outputs_per_feature():
    made = MADE(8, (32,))
    assert made[-1].out_features == 16
    shift, log_scale = made(torch.randn(100, 8))
    assert shift.abs().max() < 0.1 and log_scale.abs().max() < 0.1


def test_bad_activation():
    with pytest.raises(ValueError, match="activation"):
        MADE(3, (4,), activation="swish")
