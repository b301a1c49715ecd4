"""Coupling layers (RealNVP's affine, NICE's additive) and the flow that stacks them.

A coupling layer splits the input with a binary mask ``m``: the kept part ``x1 = m * x``
passes through unchanged and conditions an invertible map of the rest ``x2``:

- additive (NICE):  ``z2 = x2 + t(x1)``, Jacobian determinant 1 (log-det 0);
- affine (RealNVP): ``z2 = x2 * s(x1) + t(x1)``, log-det ``sum log s(x1)``.

The Jacobian is triangular (``z1`` ignores ``x2``; ``z2`` depends on ``x2`` only through
itself), so its determinant is the product of its diagonal. Both directions are one pass
of the conditioner network, which is why RealNVP samples as fast as it scores, unlike MAF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "AdditiveCoupling",
    "AffineCoupling",
    "DiagonalScaling",
    "RealNVP",
    "base_mask",
    "standard_normal_log_prob",
]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2.0 * math.pi))


def base_mask(kind: str, shape: Sequence[int]) -> Tensor:
    """The first coupling's mask over the flattened ``[C, H, W]`` image (1 = kept).

    ``checkerboard`` keeps the pixels with ``h + w`` even, in every channel (RealNVP's
    spatial checkerboard); ``halves`` keeps the first half of the pixels (the top rows).
    """
    channels, height, width = shape
    if kind == "checkerboard":
        rows = torch.arange(height).view(-1, 1)
        cols = torch.arange(width).view(1, -1)
        grid = ((rows + cols) % 2 == 0).float()
        return grid.expand(channels, height, width).flatten()
    if kind == "halves":
        features = channels * height * width
        mask = torch.zeros(features)
        mask[: (features + 1) // 2] = 1.0
        return mask
    raise ValueError(f"unknown mask {kind!r}; use checkerboard or halves")


def conditioner(features: int, hidden: Sequence[int], out_features: int) -> nn.Sequential:
    """An MLP whose last layer starts at zero, so every coupling starts as the identity."""
    layers: list[nn.Module] = []
    width = features
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    last = nn.Linear(width, out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class AdditiveCoupling(nn.Module):
    """NICE's additive coupling ``z2 = x2 + t(x1)``: volume-preserving, log-det 0.

    References:
        Dinh et al., NICE: Non-linear Independent Components Estimation, 2014.
        https://arxiv.org/abs/1410.8516

    Arguments:
        mask: ``[D]`` of 0/1; 1 marks the part that is kept and conditions the rest.
        hidden: units per hidden layer of the shift network ``t``.

    Example:
        >>> layer = AdditiveCoupling(torch.tensor([1.0, 0.0, 1.0, 0.0]), hidden=(8,))
        >>> x = torch.randn(3, 4)
        >>> z, log_det = layer(x)
        >>> torch.allclose(layer.inverse(z), x), log_det.tolist()
        (True, [0.0, 0.0, 0.0])
    """

    def __init__(self, mask: Tensor, hidden: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.shift = conditioner(mask.numel(), hidden, mask.numel())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(z, log|det dz/dx|)``."""
        x1 = x * self.mask
        z = x1 + (1 - self.mask) * (x + self.shift(x1))
        return z, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        z1 = z * self.mask
        return z1 + (1 - self.mask) * (z - self.shift(z1))


class AffineCoupling(nn.Module):
    """RealNVP's affine coupling ``z2 = x2 * s(x1) + t(x1)``, log-det ``sum log s(x1)``.

    ``log s`` is squashed by ``bound * tanh(. / bound)``: RealNVP bounds it with a tanh too,
    because an unbounded scale can blow up early in training.

    References:
        Dinh et al., Density estimation using Real NVP, 2016.
        https://arxiv.org/abs/1605.08803

    Arguments:
        mask: ``[D]`` of 0/1; 1 marks the part that is kept and conditions the rest.
        hidden: units per hidden layer of the network giving ``log s`` and ``t``.
        log_scale_bound: the soft bound ``B`` on ``|log s|``.

    Example:
        >>> layer = AffineCoupling(torch.tensor([1.0, 0.0, 1.0, 0.0]), hidden=(8,))
        >>> x = torch.randn(3, 4)
        >>> z, log_det = layer(x)
        >>> torch.allclose(layer.inverse(z), x, atol=1e-6), log_det.shape
        (True, torch.Size([3]))
    """

    def __init__(self, mask: Tensor, hidden: Sequence[int], log_scale_bound: float = 5.0) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.scale_shift = conditioner(mask.numel(), hidden, 2 * mask.numel())
        self.log_scale_bound = log_scale_bound

    def log_scale_and_shift(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        """``log s(x1)`` and ``t(x1)``, zero on the kept part (which is not transformed)."""
        raw_log_scale, shift = self.scale_shift(x1).chunk(2, dim=-1)
        bound = self.log_scale_bound
        free = 1 - self.mask
        return bound * torch.tanh(raw_log_scale / bound) * free, shift * free

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(z, log|det dz/dx|)``."""
        x1 = x * self.mask
        log_scale, shift = self.log_scale_and_shift(x1)
        z = x1 + (1 - self.mask) * (x * log_scale.exp() + shift)
        return z, log_scale.sum(-1)

    def inverse(self, z: Tensor) -> Tensor:
        z1 = z * self.mask
        log_scale, shift = self.log_scale_and_shift(z1)
        return z1 + (1 - self.mask) * (z - shift) * (-log_scale).exp()


class DiagonalScaling(nn.Module):
    """NICE's last layer ``z = x * exp(log_scale)``: without it an additive flow could not
    change volume at all, so its density could not concentrate."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.log_scale.exp(), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z * (-self.log_scale).exp()


class RealNVP(nn.Module):
    """A stack of coupling layers with alternating masks and a standard normal base.

    Layer ``k`` keeps ``mask`` when ``k`` is even and ``1 - mask`` when odd, so every
    dimension is transformed by every second layer. With ``coupling="additive"`` this is
    NICE: additive couplings and a final :class:`DiagonalScaling`.

    Arguments:
        mask: the first layer's ``[D]`` 0/1 mask (see :func:`base_mask`).
        layers: the number of coupling layers.
        hidden: units per hidden layer of each coupling's network.
        coupling: ``"affine"`` (RealNVP) or ``"additive"`` (NICE).
        log_scale_bound: see :class:`AffineCoupling`.

    Example:
        >>> flow = RealNVP(base_mask("checkerboard", (1, 2, 2)), layers=4, hidden=(16,))
        >>> flow.log_prob(torch.randn(5, 4)).shape, flow.sample(3).shape
        (torch.Size([5]), torch.Size([3, 4]))
    """

    def __init__(
        self,
        mask: Tensor,
        layers: int,
        hidden: Sequence[int],
        coupling: str = "affine",
        log_scale_bound: float = 5.0,
    ) -> None:
        super().__init__()
        if coupling not in ("affine", "additive"):
            raise ValueError(f"unknown coupling {coupling!r}; use affine or additive")
        self.features = mask.numel()
        transforms: list[nn.Module] = []
        for k in range(layers):
            layer_mask = mask if k % 2 == 0 else 1 - mask
            if coupling == "affine":
                transforms.append(AffineCoupling(layer_mask, hidden, log_scale_bound))
            else:
                transforms.append(AdditiveCoupling(layer_mask, hidden))
        if coupling == "additive":
            transforms.append(DiagonalScaling(self.features))
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> noise through every layer: ``(z, log|det dz/dx|)``."""
        total = x.new_zeros(x.shape[0])
        for transform in self.transforms:
            x, log_det = transform(x)
            total = total + log_det
        return x, total

    def inverse(self, z: Tensor) -> Tensor:
        for transform in reversed(self.transforms):
            z = transform.inverse(z)
        return z

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x) = log N(f(x); 0, I) + log|det df/dx|``, one value per row."""
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` draws; ``temperature`` scales the base noise's standard deviation."""
        like = next(self.parameters())
        z = torch.randn(n, self.features, device=like.device, dtype=like.dtype) * temperature
        return self.inverse(z)
