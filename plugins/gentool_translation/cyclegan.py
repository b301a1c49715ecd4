"""CycleGAN: unpaired translation between domains A and B with cycle-consistency losses."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gentool.api import DataInfo, l1_error, parse_direction
from gentool_translation.base import TranslationModel, set_requires_grad, to_signed, to_unit
from gentool_translation.config import CycleGANConfig
from gentool_translation.losses import run_jointly
from gentool_translation.pool import ImagePool

__all__ = ["CycleGANModel"]


class CycleGANModel(TranslationModel):
    """Two generators, ``G_A``: A -> B and ``G_B``: B -> A, each judged by a PatchGAN
    (``D_A`` on domain B, ``D_B`` on domain A), tied by ``G_B(G_A(a)) ~ a`` and
    ``G_A(G_B(b)) ~ b``.

    The generator loss is ``GAN(G_A, D_A) + GAN(G_B, D_B) + lambda_cycle * (cycle_A +
    cycle_B) + lambda_identity * lambda_cycle * (idt_A + idt_B)`` with L1 cycle and identity
    terms; the discriminators train on past fakes from two image pools. Each step updates the
    generators first, then the discriminators, as the reference does.

    References:
        Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
        Networks", ICCV 2017, https://arxiv.org/abs/1703.10593.

    Arguments:
        config: a :class:`~gentool_translation.config.CycleGANConfig`.
        data: the unpaired data's description (channels, height, width).
        device: where the networks live.

    Example:
        >>> from gentool.api import DataKind
        >>> config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1)
        >>> data = DataInfo(kind=DataKind.UNPAIRED, channels=3, height=32, width=32)
        >>> model = CycleGANModel(config, data, torch.device("cpu"))
        >>> model.translate(torch.rand(2, 3, 21, 30), "a2b").shape
        torch.Size([2, 3, 21, 30])
    """

    config: CycleGANConfig
    score_directions = ("a2b", "b2a")

    def __init__(self, config: CycleGANConfig, data: DataInfo, device: torch.device) -> None:
        super().__init__(config, data, device)
        # One channel count for both domains (the data layer converts both to it), so the
        # identity loss is always defined; keep the check for when the two may differ.
        self.channels_a = self.channels_b = data.channels
        self.networks["G_A"] = self.build_generator(self.channels_a, self.channels_b)
        self.networks["G_B"] = self.build_generator(self.channels_b, self.channels_a)
        self.networks["D_A"] = self.build_discriminator(self.channels_b)
        self.networks["D_B"] = self.build_discriminator(self.channels_a)
        # pool_fake_b holds G_A's outputs for D_A; pool_fake_a holds G_B's outputs for D_B.
        self.pool_fake_b = ImagePool(config.pool_size)
        self.pool_fake_a = ImagePool(config.pool_size)

    @property
    def uses_identity(self) -> bool:
        return self.config.lambda_identity > 0 and self.channels_a == self.channels_b

    # -- training -------------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        nets = self.networks
        return {
            "G": [*nets["G_A"].parameters(), *nets["G_B"].parameters()],
            "D": [*nets["D_A"].parameters(), *nets["D_B"].parameters()],
        }

    def generator_losses(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The weighted generator loss terms for a batch in [-1, 1], and the fakes (B, A)."""
        cfg, nets = self.config, self.networks
        g_a, g_b, together = nets["G_A"], nets["G_B"], self.batch_inputs
        identity = self.uses_identity
        # Six generator passes in three calls: G_A on A (and on B for identity), G_B on B, on
        # G_A's output (the cycle) and on A (identity), then G_A on G_B's output.
        fake_b, *idt_a = run_jointly(
            g_a, real_a, *([real_b] if identity else []), together=together
        )
        inputs_b = [real_b, fake_b, *([real_a] if identity else [])]
        fake_a, rec_a, *idt_b = run_jointly(g_b, *inputs_b, together=together)
        rec_b = g_a(fake_a)
        losses = {
            "G_A": self.gan_loss(nets["D_A"](fake_b), True),
            "G_B": self.gan_loss(nets["D_B"](fake_a), True),
            "cycle_A": F.l1_loss(rec_a, real_a) * cfg.lambda_cycle,
            "cycle_B": F.l1_loss(rec_b, real_b) * cfg.lambda_cycle,
        }
        if identity:
            # Keeps colours: a generator fed an image of its own output domain should not
            # change it.
            weight = cfg.lambda_identity * cfg.lambda_cycle
            losses["idt_A"] = F.l1_loss(idt_a[0], real_b) * weight
            losses["idt_B"] = F.l1_loss(idt_b[0], real_a) * weight
        else:
            losses["idt_A"] = losses["idt_B"] = torch.zeros((), device=real_a.device)
        return losses, fake_b, fake_a

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nets = self.networks
        d_a, d_b = nets["D_A"], nets["D_B"]
        real_a, real_b = to_signed(batch["A"]), to_signed(batch["B"])

        # Generators: D is frozen so G's backward pass spends nothing on D's gradients.
        set_requires_grad([d_a, d_b], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        losses, fake_b, fake_a = self.generator_losses(real_a, real_b)
        loss_g = sum(losses.values())
        loss_g.backward()
        self.optimizers["G"].step()

        # Discriminators, on fakes drawn from the pools of past generator outputs.
        set_requires_grad([d_a, d_b], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        together = self.batch_inputs
        loss_d_a, parts_a = self.gan_loss.discriminator_loss(
            d_a, real_b, self.pool_fake_b.query(fake_b), together
        )
        loss_d_b, parts_b = self.gan_loss.discriminator_loss(
            d_b, real_a, self.pool_fake_a.query(fake_a), together
        )
        (loss_d_a + loss_d_b).backward()
        self.optimizers["D"].step()

        self.record_epoch_loss(loss_g)
        losses.update(loss=loss_g, D_A=loss_d_a, D_B=loss_d_b)
        if "gp" in parts_a:
            losses["gp_A"], losses["gp_B"] = parts_a["gp"], parts_b["gp"]
        return {name: value.detach() for name, value in losses.items()}

    def extra_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for name, pool in (("pool_fake_a", self.pool_fake_a), ("pool_fake_b", self.pool_fake_b)):
            state.update({f"{name}.{key}": value for key, value in pool.state_dict().items()})
        return state

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, pool in (("pool_fake_a", self.pool_fake_a), ("pool_fake_b", self.pool_fake_b)):
            prefix = f"{name}."
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if part:
                pool.load_state_dict(part, self.device)

    # -- inference ------------------------------------------------------------------------------
    def _cycle(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inputs, translations and reconstructions of both domains, all in [-1, 1]."""
        g_a, g_b = self.networks["G_A"], self.networks["G_B"]
        real_a, real_b = self.signed_input(batch["A"]), self.signed_input(batch["B"])
        fake_b, fake_a = self.generate(g_a, real_a), self.generate(g_b, real_b)
        return {
            "real_A": real_a,
            "fake_B": fake_b,
            "rec_A": self.generate(g_b, fake_b),
            "real_B": real_b,
            "fake_A": fake_a,
            "rec_B": self.generate(g_a, fake_a),
        }

    @torch.no_grad()
    def preview(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Rows of real A | fake B | rec A, each followed by real B | fake A | rec B."""
        images = self._cycle(batch)
        count = min(len(batch["A"]), len(batch["B"]))
        rows = []
        for i in range(count):
            rows += [images[k][i] for k in ("real_A", "fake_B", "rec_A")]
            rows += [images[k][i] for k in ("real_B", "fake_A", "rec_B")]
        return to_unit(torch.stack(rows)), 3

    @torch.no_grad()
    def translate(self, images: torch.Tensor, direction: str | None = "a2b") -> torch.Tensor:
        """``images`` in [0, 1] of any size through G_A (``a2b``, the default) or G_B (``b2a``)."""
        generator = self.networks["G_A" if parse_direction(direction) == "a2b" else "G_B"]
        out = self.generate(generator, self.signed_input(images))
        return to_unit(out).to(images.device)

    def score_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-image L1 in [0, 1] units: cycle reconstruction (``cycle_A``: G_B(G_A(a)) vs a,
        ``cycle_B``) and identity (``idt_A``: G_A(b) vs b, ``idt_B``: G_B(a) vs a)."""
        batch = self.check_scoring_batch(batch)
        with torch.no_grad():
            signed = self._cycle(batch)
            images = {k: to_unit(v) for k, v in signed.items()}
            real_a, real_b = images["real_A"], images["real_B"]
            scores = {
                "cycle_A": l1_error(images["rec_A"], real_a),
                "cycle_B": l1_error(images["rec_B"], real_b),
            }
            if self.channels_a == self.channels_b:
                idt_a = to_unit(self.generate(self.networks["G_A"], signed["real_B"]))
                idt_b = to_unit(self.generate(self.networks["G_B"], signed["real_A"]))
                scores["idt_A"] = l1_error(idt_a, real_b)
                scores["idt_B"] = l1_error(idt_b, real_a)
            # fake B = G_A(a) comes from an A file; fake A = G_B(b) from a B file.
            a_paths, b_paths = batch.get("A_path"), batch.get("B_path")
            self.feed_distribution("a2b", real_b, images["fake_B"], b_paths, a_paths)
            self.feed_distribution("b2a", real_a, images["fake_A"], a_paths, b_paths)
        keys = {"cycle_A": a_paths, "idt_B": a_paths, "cycle_B": b_paths, "idt_A": b_paths}
        return self.record_scores(scores, keys)

    def benchmarks(self, batch_size: int) -> dict[str, Any]:
        # bench times ``translate`` (a2b, the default) itself; the other direction is extra.
        images = torch.rand(batch_size, *self.data.shape, device=self.device)
        return {"translate_b2a": lambda: self.translate(images, "b2a")}
