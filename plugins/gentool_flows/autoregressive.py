"""The masked affine autoregressive transform, with a fast exact sequential inverse."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentool_flows.made import MADE

__all__ = ["SCALES", "MaskedAffineAutoregressive", "SolvePlan", "standard_normal_log_prob"]

# (in place, out of place): in place writes straight into the solve's buffers.
_ACTIVATIONS = {
    "relu": (torch.relu_, torch.relu),
    "elu": (F.elu_, F.elu),
    "tanh": (torch.tanh_, torch.tanh),
}


#: How the MADE's second output becomes the scale s (see MaskedAffineAutoregressive).
SCALES = ("exp", "softplus")
#: The softplus scale's floor, s >= 1e-3 (nflows' choice): log s stays above -6.9.
SOFTPLUS_FLOOR = 1e-3
#: softplus(a + this) = 1 at a = 0: a freshly initialised layer is the identity.
SOFTPLUS_SHIFT = math.log(math.expm1(1.0 - SOFTPLUS_FLOOR))


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2.0 * math.pi))


@dataclass(frozen=True)
class SolvePlan:
    """Python-side bookkeeping of a sequential solve, computed once per call.

    ``order[p]`` is the feature at position p; ``ends[l][k]`` counts the units of hidden
    layer l whose degree is at most k (hidden degrees are sorted, so units of degree k are
    the block ``ends[l][k-1]:ends[l][k]``).
    """

    order: Tensor
    degrees: Tensor
    ends: tuple[tuple[int, ...], ...]


class _Rows:
    """Rows computed so far, one row per unit (or feature), each holding the whole batch.

    Units are stored feature-major (``[width, B]``) so that a block of units is a contiguous
    slice: a step's small matrix product writes straight into it. Without autograd the rows
    go into one preallocated buffer and ``known`` is a view of its filled part; with
    autograd that would overwrite memory saved for the backward pass, so rows are
    concatenated instead.
    """

    def __init__(self, like: Tensor, width: int) -> None:
        self.size = 0
        self.in_place = not torch.is_grad_enabled()
        if self.in_place:
            self.buffer = like.new_empty(width, like.shape[0])
            self.known = self.buffer[:0]
        else:
            self.known = like.new_empty(0, like.shape[0])

    def next_rows(self, count: int) -> Tensor | None:
        """Where the next ``count`` rows go (an ``out=`` target), or None under autograd."""
        return self.buffer[self.size : self.size + count] if self.in_place else None

    def append(self, rows: Tensor) -> None:
        if self.in_place:
            self.size += rows.shape[0]  # already written in place through next_rows
            self.known = self.buffer[: self.size]
        else:
            self.known = torch.cat((self.known, rows), dim=0)


class MaskedAffineAutoregressive(nn.Module):
    r"""The affine autoregressive map :math:`y_i = u_i \exp(\log s_i(u_{<i})) + t_i(u_{<i})`.

    ``forward`` (u -> y) is one parallel MADE pass; ``inverse`` (y -> u) is sequential, since
    :math:`u_i = (y_i - t_i) \exp(-\log s_i)` needs :math:`u_{<i}` first. The inverse does not
    repeat D full MADE passes: with hidden units sorted by degree, at step i only the hidden
    units of degree i-1 become computable and only the two outputs of feature i are needed,
    so all D steps together cost about one (masked, hence half-dense) pass.
    ``inverse_reference`` is the plain loop of D full passes, kept as the ground truth.
    MAF reads the map as data -> noise, IAF as noise -> data.

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        features: the number of features D.
        hidden_features: units per hidden layer of the MADE.
        order: the autoregressive order (see :func:`gentool_flows.made.input_degrees`).
        log_scale_clamp: clamp :math:`\log s` to [-c, c] (0 for no clamp); ``"exp"`` only.
        activation: the MADE's nonlinearity.
        generator: the random generator of a ``"random"`` order.
        scale: how the MADE's output a becomes s. ``"exp"``: :math:`\log s = a` (the MAF
            paper's), clamped. ``"softplus"``: :math:`s = \mathrm{softplus}(a + c) +
            10^{-3}`, with c chosen so that a = 0 gives s = 1: it grows only linearly, so
            scales cannot compound into extremely narrow densities (nflows' choice, there
            without the shift).

    Example:
        >>> t = MaskedAffineAutoregressive(4, hidden_features=(16,))
        >>> u = torch.randn(2, 4)
        >>> y, log_det = t(u)
        >>> back, _ = t.inverse(y)
        >>> torch.allclose(back, u, atol=1e-5)
        True
    """

    def __init__(
        self,
        features: int,
        hidden_features: Sequence[int] = (512, 512),
        order: str | Sequence[int] | Tensor = "natural",
        log_scale_clamp: float = 5.0,
        activation: str = "relu",
        generator: torch.Generator | None = None,
        scale: str = "exp",
    ) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        self.features = features
        self.log_scale_clamp = log_scale_clamp
        self.scale = scale
        self.made = MADE(features, hidden_features, order, activation, generator)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, log_scale_clamp={self.log_scale_clamp}"

    def _log_scale(self, a: Tensor, out: Tensor | None = None) -> Tensor:
        r""":math:`\log s` from the MADE's raw output ``a`` (into ``out`` when given)."""
        if self.scale == "softplus":
            s = F.softplus(a + SOFTPLUS_SHIFT).add_(SOFTPLUS_FLOOR)
            return torch.log(s, out=out)
        c = self.log_scale_clamp if self.log_scale_clamp > 0 else math.inf
        return torch.clamp(a, -c, c, out=out)

    def shift_and_log_scale(self, u: Tensor) -> tuple[Tensor, Tensor]:
        shift, a = self.made(u)
        return shift, self._log_scale(a)

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``y`` and ``log |det dy/du| = sum_i log s_i``, in one parallel pass."""
        shift, log_scale = self.shift_and_log_scale(u)
        return u * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def inverse_reference(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``u`` and ``log |det dy/du|`` by D full MADE passes (pass i fixes feature i)."""
        u = torch.zeros_like(y)
        log_scale = u
        for _ in range(self.features):
            shift, log_scale = self.shift_and_log_scale(u)
            u = (y - shift) * torch.exp(-log_scale)
        return u, log_scale.sum(-1)

    def inverse(self, y: Tensor, plan: SolvePlan | None = None) -> tuple[Tensor, Tensor]:
        """``u`` and ``log |det dy/du|``, sequentially but at about the cost of one pass.

        Differentiable when autograd is on (IAF's maximum likelihood needs that); without
        autograd it writes into preallocated buffers. ``plan`` may be passed in from
        :meth:`plan` (a CUDA graph capture must not read tensors back to the host).
        """
        # Autocast would hand back low-precision products that the preallocated buffers
        # cannot take, and a sequential solve compounds rounding errors anyway.
        with torch.autocast(y.device.type, enabled=False):
            return self._solve(y, plan or self.plan())

    def _solve(self, y: Tensor, plan: SolvePlan) -> tuple[Tensor, Tensor]:
        batch_shape = y.shape[:-1]
        y = y.reshape(-1, self.features)
        hidden, (out_weight, out_bias) = self._position_weights(plan.order)
        activation = _ACTIVATIONS[self.made.activation][1 if torch.is_grad_enabled() else 0]
        # Feature-major rows in position order: what is known at step p is a prefix.
        y_rows = y.index_select(-1, plan.order).t().contiguous()
        inputs = _Rows(y, self.features)
        softplus = self.scale == "softplus"
        if softplus:  # fold softplus's shift into the bias of the scale outputs: one op less
            # (no tensor from Python data here: a host copy cannot be captured in a CUDA graph)
            out_bias = torch.cat((out_bias[:, :1], out_bias[:, 1:] + SOFTPLUS_SHIFT), dim=1)
        scales = _Rows(y, self.features)  # s (softplus) or log s (exp), one row per step
        units = [_Rows(y, weight.shape[0]) for weight, _ in hidden]
        for p in range(self.features):
            known = inputs.known
            if p > 0:
                # Units of degree p-1 see only inputs at positions < p and units of degree
                # <= p-1 of the layer below: all known now, and never computable before.
                for (weight, bias), ends, layer in zip(hidden, plan.ends, units, strict=True):
                    start, stop = (ends[p - 2] if p > 1 else 0), ends[p - 1]
                    if stop > start:
                        block = weight[start:stop, : known.shape[0]]
                        rows = layer.next_rows(stop - start)
                        rows = torch.addmm(bias[start:stop], block, known, out=rows)
                        layer.append(activation(rows))
                    known = layer.known
            params = torch.addmm(out_bias[p], out_weight[p, :, : known.shape[0]], known)
            centred = y_rows[p : p + 1] - params[:1]
            if softplus:  # keep s itself; the logs of all D scales are taken once, below
                scale = F.softplus(params[1:])
                scale = torch.add(scale, SOFTPLUS_FLOOR, out=scales.next_rows(1))
                scales.append(scale)
                inputs.append(torch.div(centred, scale, out=inputs.next_rows(1)))
            else:
                log_scale = self._log_scale(params[1:], out=scales.next_rows(1))
                scales.append(log_scale)
                inverse_scale = torch.exp(-log_scale)
                inputs.append(torch.mul(centred, inverse_scale, out=inputs.next_rows(1)))
        u = inputs.known.t().index_select(-1, plan.degrees)
        log_scales = scales.known.log() if softplus else scales.known
        return u.reshape(*batch_shape, -1), log_scales.sum(0).reshape(batch_shape)

    def plan(self) -> SolvePlan:
        """The order and hidden degree blocks of the sequential solve (reads buffers)."""
        degrees = self.made.degrees
        positions = torch.arange(self.features, device=degrees.device)
        ends = tuple(
            tuple(torch.searchsorted(d, positions, right=True).tolist())
            for d in self.made.unit_degrees
        )
        return SolvePlan(order=torch.argsort(degrees), degrees=degrees, ends=ends)

    def _position_weights(
        self, order: Tensor
    ) -> tuple[list[tuple[Tensor, Tensor]], tuple[Tensor, Tensor]]:
        """Masked weights (``[out, in]``) with the features in position order.

        In position order the known inputs and units are always a prefix, so each step
        multiplies a contiguous block of rows by the known prefix. Biases become columns.
        """
        layers = self.made.masked_layers
        hidden = []
        for index, layer in enumerate(layers[:-1]):
            weight = layer.masked_weight()
            hidden.append((weight[:, order] if index == 0 else weight, layer.bias[:, None]))
        output = layers[-1]
        weight = output.masked_weight().unflatten(0, (2, self.features))[:, order]
        if not hidden:
            weight = weight[..., order]
        out_weight = weight.transpose(0, 1).contiguous()  # [D, 2, in]: (shift, log-scale)
        out_bias = output.bias.unflatten(0, (2, self.features))[:, order].t()
        return hidden, (out_weight, out_bias[..., None].contiguous())
