"""The backbone network: a torchvision ResNet up to its deepest asked stage, frozen, eval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gentool.backbones import STAGES, backbone_spec, parse_stages
from gentool.checkpoint import tensor_digest

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Backbone", "random_init"]

# torchvision's ImageClassification transform for these weights normalises so.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STEM = ("conv1", "bn1", "relu", "maxpool")


class Backbone(nn.Module):
    """Feature maps of a frozen torchvision ResNet at the stages asked, for images in [0, 1].

    Only the layers up to the deepest stage asked are built and kept (``layer4`` holds most
    of a ResNet's weights). The network is frozen and always in eval mode: ``train()`` keeps
    it there, so batch-norm statistics never change. ``forward`` runs without autograd (a
    flow trained on the features needs no gradient through them) and normalises the images
    with ImageNet's mean and std itself; grey images are repeated to RGB.

    The weights here are the seeded random ones (``weights="none"``, see
    :mod:`gentool.backbones`); :func:`~gentool.backbones.weights.load_backbone` gives
    pretrained ones and checks their digest.

    References:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
        https://arxiv.org/abs/1512.03385.
        Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016,
        https://arxiv.org/abs/1605.07146.

    Arguments:
        name: a key of :data:`~gentool.backbones.BACKBONES` (``"resnet18"``).
        stages: the stages to return, in that order (``("layer1", "layer2")``, or the same
            as one comma-separated string).
        seed: the seed of the random weights; None leaves the weights unset for a state dict
            that fills every tensor (what ``load_backbone`` does).
        device: where the kept layers are made; ``"meta"`` for their shapes alone.

    Example:
        >>> backbone = Backbone("resnet18", ("layer1", "layer2"), seed=0)
        >>> [tuple(f.shape) for f in backbone(torch.rand(2, 3, 64, 64))]
        [(2, 64, 16, 16), (2, 128, 8, 8)]
        >>> backbone.channels, backbone.strides
        ((64, 128), (4, 8))
        >>> hasattr(backbone, "layer3"), backbone.training
        (False, False)
    """

    def __init__(
        self,
        name: str,
        stages: str | Sequence[str],
        seed: int | None = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.spec = backbone_spec(name)
        self.name = name
        self.stages = parse_stages(stages)
        self.weights = "none"  # what load_backbone was given: "none", "imagenet" or a path
        self.declared_sha256 = ""  # the digest of a backbone on the meta device (no weights)
        self.seed = seed
        deepest = max(STAGES.index(stage) for stage in self.stages)
        self.kept_stages = STAGES[: deepest + 1]
        # Built on the meta device: no time or memory for the layers and random weights
        # that are dropped; the kept modules then get real, uninitialised storage.
        with torch.device("meta"):
            whole = self.spec.builder()(weights=None)
        for part in (*_STEM, *self.kept_stages):
            self.add_module(part, getattr(whole, part))
        self.to_empty(device=device)
        random_init(self, seed)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.requires_grad_(False)
        self.eval()

    @property
    def channels(self) -> tuple[int, ...]:
        """The channels of each returned feature map, in the order of ``stages``."""
        return tuple(self.spec.channels[STAGES.index(stage)] for stage in self.stages)

    @property
    def strides(self) -> tuple[int, ...]:
        """How much each returned feature map is smaller than the image, per side."""
        return tuple(self.spec.strides[STAGES.index(stage)] for stage in self.stages)

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The ``(height, width)`` of each feature map for an image of that size.

        Every downsampling in a ResNet (the stem's 7x7 convolution, its max pool, each
        stage's first stride-2 convolution) rounds up, so a stride s gives ceil(size / s).

        Example:
            >>> Backbone("resnet18", "layer1,layer3").feature_sizes(37, 64)
            [(10, 16), (3, 4)]
        """
        return [(math.ceil(height / s), math.ceil(width / s)) for s in self.strides]

    @property
    def sha256(self) -> str:
        """SHA-256 of the kept tensors (names, dtypes, shapes, bytes): the weights' identity,
        the same on every device, computed when asked."""
        if self.conv1.weight.is_meta:  # built for its shapes alone: no weights to hash
            return self.declared_sha256
        return tensor_digest(self.state_dict())

    def train(self, mode: bool = True) -> Backbone:
        return super().train(False)  # always eval: batch-norm statistics never change

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W]`` images in [0, 1] (C = 1 or 3) -> one ``[B, C_s, H_s, W_s]``
        feature map per stage, in the order of ``stages``."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images [B, 1 or 3, H, W], got {tuple(images.shape)}")
        x = images.to(self.mean.device, self.mean.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        found = {}
        for stage in self.kept_stages:
            x = getattr(self, stage)(x)
            found[stage] = x
        return [found[stage] for stage in self.stages]


@torch.no_grad()
def random_init(network: nn.Module, seed: int | None) -> None:
    """torchvision's ResNet initialisation, bit-identical on every machine.

    Convolutions: He init for ReLU with fan-out, as torchvision does, but uniform on
    ``±sqrt(6 / fan_out)`` (the same variance) instead of normal: torch's CPU normal sampler
    has an AVX2 kernel and a portable one that differ in the last bits, while its uniform
    draws are exact multiples of 2^-24 from the Mersenne Twister everywhere. Batch norm:
    weight 1, bias 0, running mean 0, variance 1. The draws come from a private generator,
    so the caller's global RNG stream is untouched. ``seed=None`` sets only the batch-norm
    buffers a state dict may lack (``num_batches_tracked``) and leaves the rest unset.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.num_batches_tracked.zero_()
            if generator is not None:
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
        elif isinstance(module, nn.Conv2d) and generator is not None:
            weight = module.weight
            fan_out = weight.shape[0] * weight[0, 0].numel()
            # 2u - 1 is exact in float32; the one product by the bound rounds the same
            # everywhere (IEEE), so the bits do not depend on the CPU's vector kernels.
            draws = torch.rand(weight.shape, generator=generator, dtype=torch.float32)
            weight.copy_(draws.mul_(2.0).sub_(1.0).mul_(math.sqrt(6.0 / fan_out)))
            if module.bias is not None:
                module.bias.zero_()
