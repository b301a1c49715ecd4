"""Pix2Pix: paired translation A -> B with a U-Net generator and a conditional PatchGAN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gentool.api import DataInfo, UserError, l1_error, psnr, ssim
from gentool_translation.base import TranslationModel, set_requires_grad, to_signed, to_unit
from gentool_translation.config import Pix2PixConfig
from gentool_translation.pool import ImagePool

__all__ = ["Pix2PixModel"]


class Pix2PixModel(TranslationModel):
    """A generator ``G``: A -> B trained on aligned pairs, against a discriminator ``D`` that
    judges (input, output) pairs patch by patch.

    The generator loss is ``GAN(G, D) + lambda_l1 * |G(a) - b|_1``: the L1 term gets the low
    frequencies right and the PatchGAN the high ones. Each step updates D first, then G, as
    the reference does. The data layer has already applied ``--direction``: ``A`` is the input.

    References:
        Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
        CVPR 2017, https://arxiv.org/abs/1611.07004.

    Arguments:
        config: a :class:`~gentool_translation.config.Pix2PixConfig`.
        data: the paired data's description; ``data.direction`` (``a2b`` unless its
            preprocessing says ``b2a``) is the direction the model translates.
        device: where the networks live.

    Example:
        >>> from gentool.api import DataKind
        >>> config = Pix2PixConfig(ngf=4, ndf=4)
        >>> data = DataInfo(kind=DataKind.PAIRED, channels=3, height=32, width=32)
        >>> model = Pix2PixModel(config, data, torch.device("cpu"))
        >>> model.translate(torch.rand(2, 3, 40, 27)).shape
        torch.Size([2, 3, 40, 27])
    """

    config: Pix2PixConfig

    def __init__(self, config: Pix2PixConfig, data: DataInfo, device: torch.device) -> None:
        super().__init__(config, data, device)
        self.direction = str(data.direction)
        self.score_directions = (self.direction,)
        self.networks["G"] = self.build_generator(self.channels, self.channels)
        # Conditional: D sees the input beside the real or generated output.
        self.networks["D"] = self.build_discriminator(2 * self.channels)
        self.pool = ImagePool(config.pool_size)

    # -- training -------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "G": list(self.networks["G"].parameters()),
            "D": list(self.networks["D"].parameters()),
        }

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        generator, discriminator = self.networks["G"], self.networks["D"]
        real_a, real_b = to_signed(batch["A"]), to_signed(batch["B"])
        fake_b = generator(real_a)
        fake_pair = torch.cat([real_a, fake_b], 1)

        set_requires_grad([discriminator], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d, parts = self.gan_loss.discriminator_loss(
            discriminator,
            torch.cat([real_a, real_b], 1),
            self.pool.query(fake_pair),
            self.batch_inputs,
        )
        loss_d.backward()
        self.optimizers["D"].step()

        # Generator: D is frozen so G's backward pass spends nothing on D's gradients.
        set_requires_grad([discriminator], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_gan = self.gan_loss(discriminator(fake_pair), True)
        loss_l1 = F.l1_loss(fake_b, real_b) * self.config.lambda_l1
        loss_g = loss_gan + loss_l1
        loss_g.backward()
        self.optimizers["G"].step()

        self.record_epoch_loss(loss_g)
        losses = {
            "loss": loss_g,
            "G_GAN": loss_gan,
            "G_L1": loss_l1,
            "D": loss_d,
            "D_real": parts["real"],
            "D_fake": parts["fake"],
        }
        if "gp" in parts:
            losses["gp"] = parts["gp"]
        return {name: value.detach() for name, value in losses.items()}

    def extra_state(self) -> dict[str, torch.Tensor]:
        if self.pool.size == 0:
            return {}
        return {f"pool.{key}": value for key, value in self.pool.state_dict().items()}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        part = {k[len("pool.") :]: v for k, v in state.items() if k.startswith("pool.")}
        if part:
            self.pool.load_state_dict(part, self.device)

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Rows of input | output | target."""
        real_a, real_b = self.signed_input(batch["A"]), self.signed_input(batch["B"])
        fake_b = self.generate(self.networks["G"], real_a)
        rows = [image for i in range(len(real_a)) for image in (real_a[i], fake_b[i], real_b[i])]
        return to_unit(torch.stack(rows)), 3

    @torch.no_grad()
    def translate(self, images: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        """``images`` in [0, 1] of any size through G; only the trained direction exists."""
        if direction is not None and direction != self.direction:
            raise UserError(
                f"this pix2pix model was trained {self.direction} and translates only that way "
                f"(got --direction {direction}); train another with --direction {direction}"
            )
        out = self.generate(self.networks["G"], self.signed_input(images))
        return to_unit(out).to(images.device)

    def score_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-image fidelity of G(A) to B in [0, 1] units: ``l1``, ``psnr`` (dB) and
        ``ssim``."""
        batch = self.check_scoring_batch(batch)
        with torch.no_grad():
            fake_b = to_unit(self.generate(self.networks["G"], self.signed_input(batch["A"])))
            real_b = to_unit(self.signed_input(batch["B"]))
            scores = {
                "l1": l1_error(fake_b, real_b),
                "psnr": psnr(fake_b, real_b),
                "ssim": ssim(fake_b, real_b),
            }
            # Labelled with the trained direction: a b2a model's outputs are A images.
            self.feed_distribution(self.direction, real_b, fake_b)
        return self.record_scores(scores)
