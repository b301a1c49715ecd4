"""Registers the translation families, cyclegan and pix2pix (light: torch loads only on use)."""

from __future__ import annotations

from collections.abc import Callable

import gentool
from gentool.api import DataKind, FamilySpec
from gentool_translation.config import CycleGANConfig, Pix2PixConfig

__all__ = ["register_families"]

CAPABILITIES = frozenset({"train", "score", "translate"})
#: Networks small enough for the contract suite to train on 32-pixel toy shapes in seconds;
#: the last epoch decays the learning rate, so resume covers the schedule too.
_SMALL = {"ngf": 8, "ndf": 8, "discriminator": "n_layers", "n_layers_d": 2, "batch_size": 64}


@gentool.hookimpl
def register_families(register: Callable[[FamilySpec], None]) -> None:
    register(
        FamilySpec(
            name="cyclegan",
            summary="CycleGAN: unpaired image translation A <-> B with cycle consistency",
            config=CycleGANConfig,
            data_kind=DataKind.UNPAIRED,
            capabilities=CAPABILITIES,
            model="gentool_translation.cyclegan:CycleGANModel",
            details={
                "paper": "Zhu et al., ICCV 2017, https://arxiv.org/abs/1703.10593",
                "networks": "ResNet generators G_A: A->B, G_B: B->A; 70x70 PatchGANs D_A, D_B",
                "scores": "per image: cycle_A, cycle_B, idt_A, idt_B (L1 in [0, 1] units)",
                "translate": "a2b (G_A) and b2a (G_B), any image size",
            },
            test_config={**_SMALL, "n_blocks": 1, "pool_size": 8, "epochs_decay": 1},
        )
    )
    register(
        FamilySpec(
            name="pix2pix",
            summary="Pix2Pix: paired image translation A -> B (U-Net + conditional PatchGAN)",
            config=Pix2PixConfig,
            data_kind=DataKind.PAIRED,
            capabilities=CAPABILITIES,
            model="gentool_translation.pix2pix:Pix2PixModel",
            details={
                "paper": "Isola et al., CVPR 2017, https://arxiv.org/abs/1611.07004",
                "networks": "U-Net generator G: A->B; conditional 70x70 PatchGAN D",
                "scores": "per image against the target: l1, psnr (dB), ssim",
                "translate": "the trained direction only (--direction at training time)",
            },
            test_config={**_SMALL, "epochs_decay": 1},
        )
    )
