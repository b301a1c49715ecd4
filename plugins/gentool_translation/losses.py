"""Adversarial losses for the translation families: LSGAN, vanilla GAN and WGAN-GP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GAN_MODES", "GANLoss", "gradient_penalty", "run_jointly"]

GAN_MODES = ("lsgan", "vanilla", "wgangp")


class GANLoss:
    """The adversarial loss of a discriminator's output map against "real" or "fake".

    ``lsgan`` is the mean squared error to 1 / 0 (CycleGAN's choice); ``vanilla`` is the
    binary cross-entropy on logits (Pix2Pix's); ``wgangp`` is the Wasserstein critic loss
    (``-mean`` for real, ``mean`` for fake) whose gradient penalty
    :meth:`discriminator_loss` adds. The discriminators end without a sigmoid in every mode.

    References:
        Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017,
        https://arxiv.org/abs/1611.04076.
        Goodfellow et al., "Generative Adversarial Networks", NeurIPS 2014,
        https://arxiv.org/abs/1406.2661.
        Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017,
        https://arxiv.org/abs/1704.00028.

    Arguments:
        mode: ``lsgan``, ``vanilla`` or ``wgangp``.
        lambda_gp: weight of the gradient penalty (``wgangp`` only).

    Example:
        >>> loss = GANLoss("lsgan")
        >>> float(loss(torch.ones(1, 1, 2, 2), True)), float(loss(torch.ones(1, 1, 2, 2), False))
        (0.0, 1.0)
    """

    def __init__(self, mode: str = "lsgan", lambda_gp: float = 10.0) -> None:
        if mode not in GAN_MODES:
            raise ValueError(f"unknown gan mode {mode!r}; choose one of {', '.join(GAN_MODES)}")
        self.mode = mode
        self.lambda_gp = lambda_gp

    def __call__(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        if self.mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        together: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A discriminator's loss on a real and a (detached) fake batch, and its parts.

        The real and fake terms are averaged (the reference halves D's loss so D learns more
        slowly than G). Under ``wgangp`` the gradient penalty is added on top, at full
        ``lambda_gp``: the reference defines the penalty but never applies it.
        ``together`` judges real and fake in one pass, which is the same computation when D
        normalises each image on its own (not under batch norm) and launches half the kernels.
        """
        fake = fake.detach()
        scores_real, scores_fake = run_jointly(discriminator, real, fake, together=together)
        loss_real = self(scores_real, True)
        loss_fake = self(scores_fake, False)
        loss = 0.5 * (loss_real + loss_fake)
        parts = {"real": loss_real.detach(), "fake": loss_fake.detach()}
        if self.mode == "wgangp":
            penalty = gradient_penalty(discriminator, real, fake, self.lambda_gp)
            loss = loss + penalty
            parts["gp"] = penalty.detach()
        return loss, parts


def run_jointly(net: nn.Module, *inputs: torch.Tensor, together: bool = True) -> list[torch.Tensor]:
    """``[net(x) for x in inputs]``, computed in one batched call when ``together`` and the
    inputs share a shape. Only exact for networks that treat each image independently (no
    batch norm in train mode); the caller decides."""
    if together and len(inputs) > 1 and all(x.shape[1:] == inputs[0].shape[1:] for x in inputs):
        return list(net(torch.cat(inputs)).split([len(x) for x in inputs]))
    return [net(x) for x in inputs]


def gradient_penalty(
    discriminator: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = 10.0,
    target_norm: float = 1.0,
) -> torch.Tensor:
    """WGAN-GP's penalty ``lambda_gp * E[(||grad_x D(x)||_2 - 1)^2]`` at random points ``x``
    on the lines between real and fake images (one mixing weight per image).

    The graph is kept (``create_graph``) so the penalty trains the discriminator.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(mixed)
    (gradients,) = torch.autograd.grad(
        outputs=scores,
        inputs=mixed,
        grad_outputs=torch.ones_like(scores),
        create_graph=True,
    )
    # The small epsilon keeps the norm differentiable where a gradient is exactly zero.
    norms = (gradients.flatten(1) + 1e-16).norm(2, dim=1)
    return lambda_gp * ((norms - target_norm) ** 2).mean()
