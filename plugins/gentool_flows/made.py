"""MADE: a feed-forward network whose masked weights make output i depend on inputs before i."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import BoolTensor, LongTensor, Tensor, nn

__all__ = ["MADE", "MaskedLinear", "hidden_degrees", "input_degrees"]

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def input_degrees(
    features: int,
    order: str | Sequence[int] | Tensor = "natural",
    generator: torch.Generator | None = None,
) -> LongTensor:
    """The degree of each input: its 0-based position in the autoregressive order.

    ``order`` is ``"natural"`` (0, 1, ..., D-1), ``"reversed"``, ``"random"`` (a permutation
    drawn from ``generator``), or explicit degrees: a permutation of ``range(features)``.
    """
    if isinstance(order, str):
        if order == "natural":
            return torch.arange(features)
        if order == "reversed":
            return torch.arange(features).flip(0)
        if order == "random":
            return torch.randperm(features, generator=generator)
        raise ValueError(f"order must be natural, reversed, random or a permutation, got {order!r}")
    degrees = torch.as_tensor(order, dtype=torch.long)
    if not torch.equal(degrees.sort().values, torch.arange(features)):
        raise ValueError(f"order must be a permutation of range({features})")
    return degrees


def hidden_degrees(features: int, width: int) -> LongTensor:
    """Degrees of ``width`` hidden units, spread evenly over 0..D-2 and non-decreasing.

    Spreading (rather than MADE's random draws) covers every degree once ``width >= D - 1``,
    so no conditional is starved of units, and gives the same network for the same sizes.
    The fast sequential inverse (:mod:`gentool_flows.autoregressive`) relies on the sort:
    the units of one degree form a contiguous block.
    """
    return torch.arange(width) * max(features - 1, 1) // width


def _masks(degrees: LongTensor, hidden: Sequence[LongTensor]) -> list[BoolTensor]:
    """MADE's masks: unit j sees unit i below when m_j >= m_i (m_j > m_i at the output)."""
    masks = []
    previous = degrees
    for current in hidden:
        masks.append(current[:, None] >= previous[None, :])
        previous = current
    # Two outputs per feature (shift, log-scale), each seeing strictly lower degrees.
    masks.append(degrees.repeat(2)[:, None] > previous[None, :])
    return masks


def _rebuild_masks(made: MADE, incompatible_keys: object) -> None:
    masks = _masks(made.degrees, made.unit_degrees)
    for layer, mask in zip(made.masked_layers, masks, strict=True):
        layer.mask.copy_(mask)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask.

    Arguments:
        mask: a boolean ``[out_features, in_features]`` matrix; False cuts a connection.
        bias: whether the layer learns an additive bias.

    Example:
        >>> layer = MaskedLinear(torch.tensor([[True, False], [True, True]]))
        >>> layer
        MaskedLinear(in_features=2, out_features=2, bias=True)
        >>> (layer.masked_weight()[0, 1] == 0).item()
        True
    """

    def __init__(self, mask: BoolTensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        # A float mask multiplies several times faster than a bool one (no type promotion);
        # it is not saved, since whoever builds the layer can rebuild it.
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)
        self._baked: tuple[Tensor, int, Tensor, int, Tensor] | None = None

    def masked_weight(self) -> Tensor:
        """A fresh ``weight * mask`` (differentiable; safe to record in a CUDA graph)."""
        return self.weight * self.mask

    def baked_weight(self) -> Tensor:
        """``weight * mask`` computed once and reused while neither tensor changes.

        For passes that need no gradient to the weight (evaluation, a frozen teacher): the
        product is the same numbers, without a multiply per pass. The sources are kept
        alive beside it, so a changed address or version counter means a changed tensor.
        """
        weight, mask, baked = self.weight, self.mask, self._baked
        if (
            baked is None
            or baked[0].data_ptr() != weight.data_ptr()
            or baked[1] != weight._version
            or baked[2].data_ptr() != mask.data_ptr()
            or baked[3] != mask._version
            or baked[4].dtype != weight.dtype
            or baked[4].device != weight.device
        ):
            # Plain tensors even under inference mode: a frozen teacher's pass may be
            # saved for the backward pass of its student.
            with torch.inference_mode(False), torch.no_grad():
                product = weight * mask
                baked = (weight.detach(), weight._version, mask.detach(), mask._version, product)
            self._baked = baked
        return baked[4]

    def forward(self, x: Tensor) -> Tensor:
        needs_grad = self.weight.requires_grad and torch.is_grad_enabled()
        weight = self.masked_weight() if needs_grad else self.baked_weight()
        return F.linear(x, weight, self.bias)


class MADE(nn.Sequential):
    r"""Masked autoencoder for distribution estimation, emitting an affine map per feature.

    Every unit has a degree: inputs their position in the order (0..D-1), hidden units a
    degree in 0..D-2. A hidden unit of degree k sees units of degree <= k; output i sees
    hidden units of degree strictly below the degree of input i. Hence output i depends
    only on the inputs before i in the order, and the Jacobian of the outputs is strictly
    triangular in that order. For every feature the network outputs a shift :math:`t_i`
    and a log-scale :math:`\log s_i`.

    References:
        | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
        | https://arxiv.org/abs/1502.03509

    Arguments:
        features: the number of features D.
        hidden_features: units per hidden layer.
        order: the autoregressive order (see :func:`input_degrees`).
        activation: ``"relu"``, ``"elu"`` or ``"tanh"``.
        generator: the random generator of a ``"random"`` order.

    Example:
        >>> made = MADE(3, hidden_features=(8, 8))
        >>> made
        MADE(
          (0): MaskedLinear(in_features=3, out_features=8, bias=True)
          (1): ReLU()
          (2): MaskedLinear(in_features=8, out_features=8, bias=True)
          (3): ReLU()
          (4): MaskedLinear(in_features=8, out_features=6, bias=True)
        )
        >>> shift, log_scale = made(torch.randn(10, 3))
        >>> shift.shape, log_scale.shape
        (torch.Size([10, 3]), torch.Size([10, 3]))
        >>> jacobian = torch.autograd.functional.jacobian(lambda x: made(x)[0], torch.randn(3))
        >>> bool((jacobian.triu() == 0).all())
        True
    """

    def __init__(
        self,
        features: int,
        hidden_features: Sequence[int] = (512, 512),
        order: str | Sequence[int] | Tensor = "natural",
        activation: str = "relu",
        generator: torch.Generator | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        degrees = input_degrees(features, order, generator)
        hidden = [hidden_degrees(features, width) for width in hidden_features]
        masks = _masks(degrees, hidden)
        layers: list[nn.Module] = []
        for mask in masks[:-1]:
            layers += [MaskedLinear(mask), ACTIVATIONS[activation]()]
        layers.append(MaskedLinear(masks[-1]))
        super().__init__(*layers)

        self.features = features
        self.activation = activation
        # Degrees are saved with the weights; masks are rebuilt from them on loading, so a
        # checkpoint carries a few integers per unit instead of a float mask per weight.
        self.register_buffer("degrees", degrees)
        for index, current in enumerate(hidden):
            self.register_buffer(f"hidden_degrees_{index}", current)
        self.register_load_state_dict_post_hook(_rebuild_masks)

        # A near-zero output layer starts the flow near the identity (shift 0, scale 1),
        # which keeps the first steps of training stable.
        output = self[-1]
        with torch.no_grad():
            output.weight.mul_(1e-2)
            output.bias.zero_()

    @property
    def masked_layers(self) -> list[MaskedLinear]:
        return [layer for layer in self if isinstance(layer, MaskedLinear)]

    @property
    def unit_degrees(self) -> list[Tensor]:
        """Degrees of the units of each hidden layer, first to last."""
        return [getattr(self, f"hidden_degrees_{i}") for i in range(len(self.masked_layers) - 1)]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``shift`` and ``log_scale``, each ``[..., D]``, for inputs ``x`` of ``[..., D]``."""
        shift, log_scale = super().forward(x).unflatten(-1, (2, self.features)).unbind(-2)
        return shift, log_scale
