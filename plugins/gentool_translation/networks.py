"""Generators and discriminators of CycleGAN and Pix2Pix, with their norm and weight-init choices.

The layer order follows the authors' reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix), module for module, so that a state dict of the
reference maps onto these networks by key and the receptive fields are those of the papers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "NORMS",
    "INIT_TYPES",
    "PatchDiscriminator",
    "PixelDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "UnetGenerator",
    "UnetSkipBlock",
    "build_discriminator",
    "build_generator",
    "init_weights",
    "norm_layer",
    "output_size",
    "receptive_field",
    "unet_downsamplings",
]

NORMS = ("batch", "instance", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")

NormFactory = Callable[[int], nn.Module]


def norm_layer(kind: str) -> NormFactory:
    """A factory ``channels -> normalisation layer`` for ``batch``, ``instance`` or ``none``.

    Batch norm learns an affine map and keeps running statistics; instance norm does neither,
    as in the reference, so a CycleGAN generator behaves the same in train and eval mode.
    """
    if kind == "batch":
        return lambda channels: nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def _conv_bias(norm: str) -> bool:
    # Batch norm's learned shift makes a conv bias redundant. The reference keeps the bias
    # under instance norm (same parameter layout as its checkpoints); without any norm the
    # bias is the only shift a layer has, so keep it there too.
    return norm != "batch"


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv and linear weights as the reference does; biases start at zero.

    ``normal`` draws N(0, gain) (the papers' choice); ``xavier`` and ``orthogonal`` scale by
    ``gain``; ``kaiming`` uses fan-in and ignores it. Batch-norm scales draw N(1, gain).
    Draws come from torch's global generator, so the caller's seed fixes the weights.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}; choose one of {', '.join(INIT_TYPES)}")

    def init_module(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if init_type == "normal":
                nn.init.normal_(module.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(module.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)

    with torch.no_grad():
        net.apply(init_module)
    return net


# -- ResNet generator -----------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with a residual connection (optional dropout)."""

    def __init__(self, channels: int, norm: str = "instance", dropout: bool = False) -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(channels),
            nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(channels),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator: 7x7 stem, two stride-2 downsamplings, residual blocks, two
    transposed-conv upsamplings and a 7x7 tanh head.

    References:
        Johnson et al., "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
        ECCV 2016, https://arxiv.org/abs/1603.08155.
        Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
        Networks", ICCV 2017, https://arxiv.org/abs/1703.10593.

    Arguments:
        in_channels, out_channels: image channels in and out.
        ngf: filters of the first and last convolution (doubled at each downsampling).
        n_blocks: residual blocks at the bottleneck (9 for 256 px, 6 for 128 px in the paper).
        norm: ``instance`` (default), ``batch`` or ``none``.
        dropout: dropout (p = 0.5) inside each residual block.

    Height and width must be multiples of 4 (and at least 8) to come back at the same size.

    Example:
        >>> net = ResnetGenerator(3, 3, ngf=8, n_blocks=2)
        >>> net(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    downsamplings = 2
    #: Sides the network maps back to the same size are multiples of this, and at least
    #: ``min_size`` (the bottleneck's reflection padding needs two pixels).
    size_multiple = 4
    min_size = 8

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError("n_blocks must be >= 0")
        make_norm, bias = norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        channels = ngf
        for _ in range(self.downsamplings):
            layers += [
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1, bias=bias),
                make_norm(channels * 2),
                nn.ReLU(True),
            ]
            channels *= 2
        layers += [ResnetBlock(channels, norm, dropout) for _ in range(n_blocks)]
        for _ in range(self.downsamplings):
            layers += [
                nn.ConvTranspose2d(
                    channels, channels // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                make_norm(channels // 2),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# -- U-Net generator ------------------------------------------------------------------------------
class UnetSkipBlock(nn.Module):
    """One U-Net level: downsample, run the inner levels, upsample, concatenate the skip.

    Arguments:
        outer_channels: channels this level returns to (before the skip concatenation).
        inner_channels: channels after this level's downsampling convolution.
        in_channels: input channels when they differ from ``outer_channels`` (outermost).
        inner: the next level down; None for the innermost level.
        outermost: the level that sees the image and ends in tanh (no skip, no norm).
        dropout: dropout (p = 0.5) after the upsampling, as in the pix2pix decoder.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        in_channels: int | None = None,
        inner: UnetSkipBlock | None = None,
        outermost: bool = False,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_layer(norm), _conv_bias(norm)
        in_channels = outer_channels if in_channels is None else in_channels
        down_conv = nn.Conv2d(in_channels, inner_channels, 4, stride=2, padding=1, bias=bias)
        if outermost:
            up_conv = nn.ConvTranspose2d(inner_channels * 2, outer_channels, 4, 2, 1)
            layers = [down_conv, inner, nn.ReLU(True), up_conv, nn.Tanh()]
        elif inner is None:  # innermost: the bottleneck, no skip below it
            up_conv = nn.ConvTranspose2d(inner_channels, outer_channels, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down_conv, nn.ReLU(True), up_conv]
            layers.append(make_norm(outer_channels))
        else:
            up_conv = nn.ConvTranspose2d(inner_channels * 2, outer_channels, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down_conv, make_norm(inner_channels), inner]
            layers += [nn.ReLU(True), up_conv, make_norm(outer_channels)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The reference's in-place LeakyReLU also rewrites the tensor it concatenates, so the
        # skip carries the activated features; do the same, explicitly.
        x = self.model[0](x)
        out = x
        for layer in itertools.islice(self.model, 1, None):
            out = layer(out)
        return torch.cat([x, out], 1)


class UnetGenerator(nn.Module):
    """The Pix2Pix generator: an encoder-decoder with skip connections between mirrored levels.

    References:
        Ronneberger et al., "U-Net", MICCAI 2015, https://arxiv.org/abs/1505.04597.
        Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
        CVPR 2017, https://arxiv.org/abs/1611.07004.

    Arguments:
        in_channels, out_channels: image channels in and out.
        downsamplings: levels; an image of side 2**downsamplings reaches 1x1 at the bottleneck
            (8 for 256 px, 7 for 128 px). At least 5.
        ngf: filters of the outermost level (x2, x4, x8 below it, then capped at x8).
        norm: ``batch`` (default), ``instance`` or ``none``.
        dropout: dropout in the ``downsamplings - 5`` innermost x8 decoder levels.

    Example:
        >>> net = UnetGenerator(3, 3, downsamplings=5, ngf=8)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsamplings: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if downsamplings < 5:
            raise ValueError("a U-Net needs at least 5 downsamplings")
        block = UnetSkipBlock(ngf * 8, ngf * 8, norm=norm)
        for _ in range(downsamplings - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, inner=block, norm=norm, dropout=dropout)
        for scale in (4, 2, 1):
            block = UnetSkipBlock(ngf * scale, ngf * scale * 2, inner=block, norm=norm)
        self.model = UnetSkipBlock(
            out_channels, ngf, in_channels, inner=block, outermost=True, norm=norm
        )
        # Sides must be multiples of 2**downsamplings to come back at the same size.
        self.size_multiple = self.min_size = 2**downsamplings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def unet_downsamplings(size: int) -> int:
    """U-Net levels for square images of side ``size``: halve while it stays whole.

    8 for 256 px, 7 for 128 px (as the reference's ``unet_256``/``unet_128``), 5 for 96 px.
    """
    levels = 0
    while size > 1 and size % 2 == 0:
        size //= 2
        levels += 1
    return levels


# -- discriminators -------------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator: one real/fake logit per overlapping image patch.

    With ``n_layers=3`` each output sees a 70x70 patch of the input (the papers' default).

    References:
        Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
        CVPR 2017, https://arxiv.org/abs/1611.07004.

    Arguments:
        in_channels: image channels (input plus output channels for a conditional D).
        ndf: filters of the first convolution (doubled per layer, capped at x8).
        n_layers: stride-2 convolutions.
        norm: ``instance``, ``batch`` or ``none``; the first layer is never normalised.

    Example:
        >>> PatchDiscriminator(3, ndf=8)(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 1, 30, 30])
        >>> receptive_field(PatchDiscriminator(3, ndf=8))
        70
    """

    def __init__(
        self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError("a PatchGAN needs at least one layer")
        make_norm, bias = norm_layer(norm), _conv_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last hidden layer keeps the resolution
            layers += [
                nn.Conv2d(ndf * previous, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """The 1x1 PixelGAN discriminator: judges each pixel's colour, not spatial structure."""

    def __init__(self, in_channels: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), _conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            make_norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _convolutions(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def receptive_field(net: nn.Module) -> int:
    """Side of the input patch one output unit of a plain chain of convolutions sees.

    Walks the convolutions from the output back: ``r <- (r - 1) * stride + dilation *
    (kernel - 1) + 1``. 70 for the default PatchGAN, 1 for the pixel discriminator.
    """
    field = 1
    for conv in reversed(_convolutions(net)):
        kernel = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
        field = (field - 1) * conv.stride[0] + kernel
    return field


def output_size(net: nn.Module, size: int) -> int:
    """Side of a chain-of-convolutions discriminator's output for an input of side ``size``."""
    for conv in _convolutions(net):
        kernel = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
        size = (size + 2 * conv.padding[0] - kernel) // conv.stride[0] + 1
    return size


# -- builders from a config ---------------------------------------------------------------------
def build_generator(
    kind: str,
    in_channels: int,
    out_channels: int,
    *,
    image_size: int,
    ngf: int,
    n_blocks: int,
    unet_downs: int,
    norm: str,
    dropout: bool,
) -> nn.Module:
    """A ``resnet`` or ``unet`` generator (weights not yet initialised)."""
    if kind == "resnet":
        return ResnetGenerator(in_channels, out_channels, ngf, n_blocks, norm, dropout)
    if kind == "unet":
        downs = unet_downs or unet_downsamplings(image_size)
        return UnetGenerator(in_channels, out_channels, downs, ngf, norm, dropout)
    raise ValueError(f"unknown generator {kind!r}; choose resnet or unet")


def build_discriminator(
    kind: str, in_channels: int, *, ndf: int, n_layers: int, norm: str
) -> nn.Module:
    """``basic`` (70x70 PatchGAN), ``n_layers`` (PatchGAN of ``n_layers``) or ``pixel``."""
    if kind == "basic":
        return PatchDiscriminator(in_channels, ndf, 3, norm)
    if kind == "n_layers":
        return PatchDiscriminator(in_channels, ndf, n_layers, norm)
    if kind == "pixel":
        return PixelDiscriminator(in_channels, ndf, norm)
    raise ValueError(f"unknown discriminator {kind!r}; choose basic, n_layers or pixel")
