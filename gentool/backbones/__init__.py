"""Frozen pretrained CNN features for any family: torchvision ResNets cut after a stage.

The table of backbones (:data:`BACKBONES`) imports no torch, so a family's config module can
offer its names as choices at CLI start-up; :class:`~gentool.backbones.network.Backbone` and
:func:`~gentool.backbones.weights.load_backbone` load torch and torchvision on first use.

Where the weights come from (``weights``):

- ``"imagenet"``: torchvision's ``IMAGENET1K_V1`` weights of that model (the ones FastFlow,
  PatchCore and anomalib report with; pinned, so torchvision moving its ``DEFAULT`` to newer
  weights never changes a trained model's backbone), downloaded once with a progress bar on
  stderr into torch hub's cache (``torch.hub.get_dir()/checkpoints``);
- a ``.pth`` file (``--backbone-weights FILE``, for machines without internet);
- ``"none"``: a seeded random initialisation, a documented, weaker baseline (and what tests
  use). It follows torchvision's scheme (He init, fan-out, for convolutions; batch norm at
  weight 1, bias 0) but draws uniformly with the same variance from a private generator:
  torch's CPU normal sampler gives other bits on machines without AVX2 (ARM laptops) than on
  x86 ones, and the weights must be bit-identical everywhere for their digest to match.

Every weights file is read with ``torch.load(weights_only=True)`` only, so a pickle carrying
code is refused, never run; a file named the way torchvision names its files
(``resnet18-f37072fd.pth``) must have a SHA-256 that starts with the hex in its name, in the
cache as well as elsewhere.

The backbone's tensors are not stored in a family's checkpoints: they would add 11 to 270 MB
to every ``model.safetensors`` and to the ``resume.safetensors`` written each epoch. A
checkpoint stores the backbone's name, stages, weights and :attr:`Backbone.sha256` (over the
kept tensors' names, dtypes, shapes and bytes, as the checkpoint's own digest) in its
hyperparameters; ``score`` re-reads the weights from torch's cache, the file or the seed and
passes ``expected_sha256``, so a different backbone is one clear line, never wrong scores.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gentool.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from torch import nn

    from gentool.backbones.network import Backbone
    from gentool.backbones.weights import imagenet_url, imagenet_weights_path, load_backbone

__all__ = [
    "BACKBONES",
    "STAGES",
    "Backbone",
    "BackboneSpec",
    "backbone_spec",
    "imagenet_url",
    "imagenet_weights_path",
    "load_backbone",
    "parse_stages",
]

#: The ResNet stages a backbone can return, shallow to deep.
STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class BackboneSpec:
    """One supported torchvision model: its builder, its ImageNet weights, its stages.

    Arguments:
        name: the name of torchvision's builder (``torchvision.models.resnet18``).
        weights: its ImageNet weights in torchvision's weights API, ``Enum.MEMBER``.
        channels: the channels of each stage, ``layer1`` to ``layer4``.
        strides: each stage's downsampling of the input (stride 4: a quarter of its size).

    Example:
        >>> BACKBONES["resnet18"].channels
        (64, 128, 256, 512)
    """

    name: str
    weights: str
    channels: tuple[int, int, int, int]
    strides: tuple[int, int, int, int] = (4, 8, 16, 32)

    def builder(self) -> Callable[..., nn.Module]:
        """torchvision's function that builds the whole model (``weights=None``: random)."""
        import torchvision.models

        return getattr(torchvision.models, self.name)

    def imagenet_weights(self) -> Any:
        """The ``torchvision.models.WeightsEnum`` member of the ImageNet weights."""
        import torchvision.models

        enum, member = self.weights.split(".")
        return getattr(getattr(torchvision.models, enum), member)


_NARROW = (64, 128, 256, 512)  # BasicBlock ResNets
_WIDE = (256, 512, 1024, 2048)  # Bottleneck ResNets: 4x expansion

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet18", "ResNet18_Weights.IMAGENET1K_V1", _NARROW),
        BackboneSpec("resnet34", "ResNet34_Weights.IMAGENET1K_V1", _NARROW),
        BackboneSpec("resnet50", "ResNet50_Weights.IMAGENET1K_V1", _WIDE),
        BackboneSpec("wide_resnet50_2", "Wide_ResNet50_2_Weights.IMAGENET1K_V1", _WIDE),
    )
}


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a supported backbone; an unknown name is one line listing the known ones."""
    spec = BACKBONES.get(name)
    if spec is None:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return spec


def parse_stages(stages: str | Sequence[str]) -> tuple[str, ...]:
    """Stage names in the order asked, from a sequence or a comma-separated string.

    Example:
        >>> parse_stages("layer1, layer3")
        ('layer1', 'layer3')
    """
    names = stages.split(",") if isinstance(stages, str) else list(stages)
    names = [str(name).strip() for name in names]
    if not names or not all(names):
        raise UserError(f"backbone stages: name at least one of {', '.join(STAGES)}")
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise UserError(f"unknown backbone stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    if len(set(names)) != len(names):
        raise UserError(f"backbone stages: each stage at most once, not {', '.join(names)}")
    return tuple(names)


_LAZY = {
    "Backbone": "gentool.backbones.network",
    "load_backbone": "gentool.backbones.weights",
    "imagenet_url": "gentool.backbones.weights",
    "imagenet_weights_path": "gentool.backbones.weights",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gentool.backbones' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
