"""A 2D normalizing flow on feature maps: FastFlow's affine couplings of channel halves."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AffineCoupling2d", "FastFlow2d"]


class AffineCoupling2d(nn.Module):
    r"""One flow step on a feature map ``[B, C, H, W]``: an affine coupling, a learnt
    per-channel affine map, and a fixed channel permutation.

    The first :math:`C - \lfloor C/2 \rfloor` channels :math:`x_1` pass unchanged and set
    the scale and shift of the others through a small convolutional net:
    :math:`y_2 = x_2 \exp(s(x_1)) + t(x_1)`, with :math:`s = c \tanh(a / c)` soft-clamped
    to :math:`[-c, c]`. The convolutions see a neighbourhood (3x3) or one location (1x1), so
    the log-determinant is a sum over channels *per location*: the flow gives a density
    for every location of the map. The net's last convolution starts at zero, so each step
    starts as the identity.

    Arguments:
        channels: C.
        kernel_size: of the subnet's two convolutions (3 or 1).
        hidden_ratio: the subnet's hidden channels per input channel.
        clamp: c.
        permutation: the channel order after the step (a permutation of ``range(C)``).

    Example:
        >>> step = AffineCoupling2d(4, 3, 1.0, 2.0, torch.tensor([3, 1, 0, 2]))
        >>> _ = nn.init.normal_(step.net[-1].weight)
        >>> x = torch.randn(2, 4, 5, 5)
        >>> y, log_det = step(x)
        >>> log_det.shape, torch.allclose(step.inverse(y), x, atol=1e-5)
        (torch.Size([2, 5, 5]), True)
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        hidden_ratio: float,
        clamp: float,
        permutation: Tensor,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError("a coupling needs at least two channels")
        self.keep = channels - channels // 2
        hidden = max(1, int(self.keep * hidden_ratio))
        padding = kernel_size // 2
        self.net = nn.Sequential(
            nn.Conv2d(self.keep, hidden, kernel_size, padding=padding),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * (channels - self.keep), kernel_size, padding=padding),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.clamp = clamp
        # Glow's actnorm without its data-dependent start: a learnt scale and shift per
        # channel, which lets the flow match the features' spread from the first step.
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.shift = nn.Parameter(torch.zeros(channels))
        self.register_buffer("permutation", permutation.clone())
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    def _scale_shift(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        a, t = self.net(x1).chunk(2, dim=1)
        return self.clamp * torch.tanh(a / self.clamp), t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``y`` and ``log |det dy/dx|`` per location ``[B, H, W]``."""
        x1, x2 = x[:, : self.keep], x[:, self.keep :]
        log_s, t = self._scale_shift(x1)
        y = torch.cat([x1, x2 * torch.exp(log_s) + t], dim=1)
        y = y * torch.exp(self.log_scale)[:, None, None] + self.shift[:, None, None]
        log_det = log_s.sum(dim=1) + self.log_scale.sum()
        return y[:, self.permutation], log_det

    def inverse(self, y: Tensor) -> Tensor:
        y = y[:, self.inverse_permutation]
        y = (y - self.shift[:, None, None]) * torch.exp(-self.log_scale)[:, None, None]
        x1, y2 = y[:, : self.keep], y[:, self.keep :]
        log_s, t = self._scale_shift(x1)
        return torch.cat([x1, (y2 - t) * torch.exp(-log_s)], dim=1)


class FastFlow2d(nn.Module):
    r"""FastFlow's flow for one feature level: steps of :class:`AffineCoupling2d` whose
    subnets alternate 3x3 and 1x1 convolutions, over a standard normal at every location.

    :meth:`nll_map` is the exact negative log-likelihood of each location's feature vector,
    in nats per channel (comparable between levels of different widths).

    References:
        | FastFlow: Unsupervised Anomaly Detection and Localization via 2D Normalizing
        | Flows (Yu et al., 2021). https://arxiv.org/abs/2111.07677

    Arguments:
        channels: the feature map's channels.
        steps: the number of coupling steps.
        hidden_ratio: the subnets' hidden channels per input channel.
        conv3x3_only: 3x3 convolutions in every step.
        clamp: the soft clamp of the log-scales.
        seed: seeds the channel permutations (the weights use torch's global generator).

    Example:
        >>> flow = FastFlow2d(8, steps=2)
        >>> flow.nll_map(torch.randn(3, 8, 6, 6)).shape
        torch.Size([3, 6, 6])
    """

    def __init__(
        self,
        channels: int,
        steps: int = 8,
        hidden_ratio: float = 1.0,
        conv3x3_only: bool = False,
        clamp: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.steps = nn.ModuleList(
            AffineCoupling2d(
                channels,
                1 if i % 2 and not conv3x3_only else 3,
                hidden_ratio,
                clamp,
                torch.randperm(channels, generator=generator),
            )
            for i in range(steps)
        )
        self.channels = channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` and ``log |det dz/dx|`` per location ``[B, H, W]``."""
        log_det = x.new_zeros(x.shape[0], *x.shape[2:])
        for step in self.steps:
            x, step_log_det = step(x)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, z: Tensor) -> Tensor:
        for step in reversed(self.steps):
            z = step.inverse(z)
        return z

    def nll_map(self, x: Tensor) -> Tensor:
        """``-log p(x_hw) / C`` for every location ``hw``: ``[B, H, W]`` in nats per channel."""
        z, log_det = self(x)
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        return (0.5 * z.pow(2).sum(dim=1) - log_det) / self.channels + half_log_2pi
