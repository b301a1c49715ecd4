"""Hyperparameters of CycleGAN and Pix2Pix, with the authors' reference defaults (no torch).

Defaults follow junyanz/pytorch-CycleGAN-and-pix2pix (options/base_options.py,
options/train_options.py and each model's ``modify_commandline_options``); the reference's
flag is named in each help line where ours differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from gentool.api import TrainConfig, option

__all__ = ["CycleGANConfig", "Pix2PixConfig", "TranslationConfig"]


@dataclass
class TranslationConfig(TrainConfig):
    """What both translation families share: schedule, optimiser, networks, GAN objective."""

    # -- schedule and optimiser (a GAN trains one image at a time at 2e-4) ------------------
    epochs: int = option(
        200,
        "epochs the run lasts in all (the reference's n_epochs + n_epochs_decay)",
        minimum=1,
        resumable=True,
    )
    batch_size: int = option(1, "images per training step", minimum=1)
    lr: float = option(0.0002, "initial learning rate of both Adam optimisers", above=0.0)
    epochs_decay: int = option(
        100,
        "the last N epochs, over which the lr decays linearly to zero (n_epochs_decay; "
        "at most --epochs; 0 = constant)",
        minimum=0,
        resumable=True,
    )
    beta1: float = option(0.5, "Adam's first-moment decay (momentum term)", minimum=0.0)
    lr_policy: str = option(
        "linear",
        "learning-rate schedule, stepped once per epoch",
        choices=("linear", "step", "plateau", "cosine"),
    )
    lr_decay_epochs: int = option(
        50, "step policy: multiply the lr by 0.1 every N epochs (lr_decay_iters)", minimum=1
    )
    # -- networks -----------------------------------------------------------------------------
    generator: str = option(
        "resnet",
        "generator: resnet (residual blocks) or unet (skip connections) (netG)",
        choices=("resnet", "unet"),
    )
    n_blocks: int = option(
        9, "residual blocks of the resnet generator (resnet_9blocks / resnet_6blocks)", minimum=0
    )
    unet_downs: int = option(
        0,
        "U-Net downsamplings; 0 derives them from the image size (8 at 256 px, 7 at 128)",
        minimum=0,
    )
    ngf: int = option(64, "generator filters in the first and last convolution", minimum=1)
    discriminator: str = option(
        "basic",
        "discriminator: basic (70x70 PatchGAN), n_layers (PatchGAN of n_layers_d) or pixel "
        "(1x1) (netD)",
        choices=("basic", "n_layers", "pixel"),
    )
    n_layers_d: int = option(3, "stride-2 layers of an n_layers PatchGAN", minimum=1)
    ndf: int = option(64, "discriminator filters in the first convolution", minimum=1)
    norm: str = option("instance", "normalisation layers", choices=("instance", "batch", "none"))
    init_type: str = option(
        "normal",
        "weight initialisation",
        choices=("normal", "xavier", "kaiming", "orthogonal"),
    )
    init_gain: float = option(
        0.02, "std of normal init; gain of xavier and orthogonal", minimum=0.0
    )
    dropout: bool = option(False, "dropout (0.5) in the generator (the opposite of no_dropout)")
    # -- objective ----------------------------------------------------------------------------
    gan_mode: str = option(
        "lsgan",
        "adversarial loss: lsgan (least squares), vanilla (cross-entropy) or wgangp",
        choices=("lsgan", "vanilla", "wgangp"),
    )
    lambda_gp: float = option(10.0, "weight of the WGAN-GP gradient penalty", minimum=0.0)
    pool_size: int = option(50, "past fakes kept for the discriminator (0 = no pool)", minimum=0)
    eval_mode: bool = option(
        False,
        "translate with batch-norm running statistics and no dropout (the reference's --eval); "
        "off, like the authors' test.py, each image uses its own statistics",
        resumable=True,
    )


@dataclass
class CycleGANConfig(TranslationConfig):
    """CycleGAN's hyperparameters (cycle_gan_model.py: lambda_A = lambda_B = 10, identity
    0.5, no dropout, resnet_9blocks, instance norm, LSGAN, a pool of 50)."""

    lambda_cycle: float = option(
        10.0, "weight of the cycle-consistency L1 losses (lambda_A = lambda_B)", minimum=0.0
    )
    lambda_identity: float = option(
        0.5,
        "weight of the identity losses relative to lambda_cycle (0.5 -> 0.5 * lambda_cycle); "
        "0 disables them",
        minimum=0.0,
    )


@dataclass
class Pix2PixConfig(TranslationConfig):
    """Pix2Pix's hyperparameters (pix2pix_model.py: unet_256, batch norm, dropout, vanilla
    GAN, no pool, lambda_L1 = 100)."""

    generator: str = option(
        "unet",
        "generator: unet (skip connections) or resnet (residual blocks) (netG)",
        choices=("resnet", "unet"),
    )
    norm: str = option("batch", "normalisation layers", choices=("instance", "batch", "none"))
    dropout: bool = option(True, "dropout (0.5) in the generator (the opposite of no_dropout)")
    gan_mode: str = option(
        "vanilla",
        "adversarial loss: vanilla (cross-entropy), lsgan (least squares) or wgangp",
        choices=("lsgan", "vanilla", "wgangp"),
    )
    pool_size: int = option(0, "past fakes kept for the discriminator (0 = no pool)", minimum=0)
    lambda_l1: float = option(100.0, "weight of the L1 loss to the target (lambda_L1)", minimum=0.0)
