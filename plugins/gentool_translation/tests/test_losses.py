"""GAN losses: targets per mode, and a WGAN-GP penalty that is really applied."""

import pytest
import torch
import torch.nn.functional as F

from gentool_translation.losses import GANLoss, gradient_penalty
from gentool_translation.networks import build_discriminator


def test_lsgan_and_vanilla_targets():
    prediction = torch.tensor([[0.3, -1.2]])
    lsgan, vanilla = GANLoss("lsgan"), GANLoss("vanilla")
    assert torch.isclose(lsgan(prediction, True), ((prediction - 1) ** 2).mean())
    assert torch.isclose(lsgan(prediction, False), (prediction**2).mean())
    expected = F.binary_cross_entropy(torch.sigmoid(prediction), torch.ones_like(prediction))
    assert torch.isclose(vanilla(prediction, True), expected)


def test_wgan_critic_signs():
    prediction = torch.tensor([1.0, 3.0])
    loss = GANLoss("wgangp")
    assert loss(prediction, True).item() == -2.0
    assert loss(prediction, False).item() == 2.0


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        GANLoss("hinge")


def test_gradient_penalty_is_nonzero_and_included():
    torch.manual_seed(0)
    critic = build_discriminator("basic", 3, ndf=4, n_layers=3, norm="instance")
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = GANLoss("wgangp", lambda_gp=10.0)

    torch.manual_seed(1)
    total, parts = loss.discriminator_loss(critic, real, fake)
    torch.manual_seed(1)
    penalty = gradient_penalty(critic, real, fake, 10.0)
    assert penalty.item() > 0
    assert torch.isclose(parts["gp"], penalty)
    assert torch.isclose(total, 0.5 * (parts["real"] + parts["fake"]) + penalty)

    # The penalty trains the critic: it has gradients with respect to D's weights.
    critic.zero_grad()
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())


def test_other_modes_add_no_penalty():
    critic = build_discriminator("pixel", 3, ndf=4, n_layers=3, norm="none")
    total, parts = GANLoss("lsgan").discriminator_loss(
        critic, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    )
    assert "gp" not in parts
    assert torch.isclose(total, 0.5 * (parts["real"] + parts["fake"]))


def test_gradient_penalty_scales_with_lambda():
    critic = build_discriminator("pixel", 3, ndf=4, n_layers=3, norm="none")
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    torch.manual_seed(3)
    one = gradient_penalty(critic, real, fake, 1.0)
    torch.manual_seed(3)
    ten = gradient_penalty(critic, real, fake, 10.0)
    assert torch.isclose(ten, 10 * one)
