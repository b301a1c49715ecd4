"""A stack of masked affine autoregressive layers over a standard normal, read in both ways."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from gentool_flows.autoregressive import (
    MaskedAffineAutoregressive,
    SolvePlan,
    standard_normal_log_prob,
)
from gentool_flows.batchnorm import BatchNorm
from gentool_flows.graphs import GraphCache

__all__ = ["AutoregressiveFlow"]

ORDERS = ("natural", "random")
READS = ("data", "noise")


class AutoregressiveFlow(nn.Module):
    r"""The stack MAF and IAF share; they differ only in which way they read it.

    Each layer maps :math:`u \mapsto y` with :math:`y_i = u_i \exp(\log s_i(u_{<i})) +
    t_i(u_{<i})`. :meth:`transform` runs every layer's parallel map, first to last;
    :meth:`solve` inverts them, last to first, each by the fast sequential solve;
    :meth:`solve_reference` does the same with plain loops of full passes. All three return
    ``log |det dy/du|`` of the whole stack. A subclass says which way ``transform`` reads
    (:attr:`transform_reads`): ``"data"`` is MAF, data -> noise (fast density, sequential
    sampling); ``"noise"`` is IAF, noise -> data (fast sampling, sequential density).
    :meth:`forward`, :meth:`inverse`, :meth:`log_prob` and :meth:`sample` follow from it.

    Arguments:
        features: the number of features D.
        num_layers: the number of autoregressive layers.
        hidden_features: units per hidden layer of each layer's MADE.
        order: ``"natural"`` reverses the order between layers (natural, reversed, ...);
            ``"random"`` draws a permutation per layer from ``seed``.
        batch_norm: put a :class:`~gentool_flows.batchnorm.BatchNorm` between layers (MAF's
            option; IAF passes False).
        log_scale_clamp: clamp every :math:`\log s` to [-c, c] (0 for no clamp; exp scale).
        activation: the MADEs' nonlinearity (``"relu"``, ``"elu"`` or ``"tanh"``).
        seed: seeds the random orders (weights use torch's global generator).
        scale: ``"exp"`` or ``"softplus"`` (see :class:`MaskedAffineAutoregressive`).
    """

    #: What :meth:`transform` maps from: ``"data"`` (to noise: MAF) or ``"noise"`` (IAF).
    transform_reads: ClassVar[str]

    def __init__(
        self,
        features: int,
        num_layers: int = 5,
        hidden_features: Sequence[int] = (512, 512),
        order: str = "natural",
        batch_norm: bool = True,
        log_scale_clamp: float = 5.0,
        activation: str = "relu",
        seed: int = 0,
        scale: str = "exp",
    ) -> None:
        super().__init__()
        if getattr(self, "transform_reads", None) not in READS:
            raise TypeError(f"{type(self).__name__}.transform_reads must be one of {READS}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if num_layers < 1:
            raise ValueError("a flow needs at least one layer")
        generator = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        for k in range(num_layers):
            layer_order = order if order == "random" else ("natural", "reversed")[k % 2]
            layers.append(
                MaskedAffineAutoregressive(
                    features,
                    hidden_features,
                    layer_order,
                    log_scale_clamp,
                    activation,
                    generator,
                    scale,
                )
            )
            if batch_norm and k < num_layers - 1:
                layers.append(BatchNorm(features))
        self.layers = nn.ModuleList(layers)
        self.features = features
        #: Replay the sequential pass as a CUDA graph (CUDA tensors, autograd off): far
        #: fewer kernel launches. Opt-in; graphs hold GPU memory until ``clear_graphs``.
        self.cuda_graphs = False
        self._graphs = GraphCache()

    # -- the flow, read the subclass's way ----------------------------------------------------
    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """The parallel pass (MAF: data to noise, IAF: noise to data) and its log-det."""
        return self.transform(u)

    def inverse(self, y: Tensor) -> Tensor:
        """The other way, feature by feature (differentiable when autograd is on)."""
        return self.solve(y)[0]

    def inverse_reference(self, y: Tensor) -> Tensor:
        """:meth:`inverse` by D full MADE passes per layer: the plain loop, for checking."""
        return self.solve_reference(y)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` per row, exact: one parallel pass (MAF) or a sequential solve (IAF)."""
        if self.transform_reads == "data":
            z, log_det = self.transform(x)  # log |det dz/dx|
            return self.base_log_prob(z) + log_det
        z, log_det = self.solve(x)  # log |det dx/dz|
        return self.base_log_prob(z) - log_det

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` samples from ``z ~ N(0, T^2 I)``: a solve (MAF) or one pass (IAF); no gradients."""
        z = self.noise(n, temperature, generator)
        with torch.inference_mode():
            x = self.solve(z)[0] if self.transform_reads == "data" else self.transform(z)[0]
        return x.clone()  # an ordinary tensor again, usable outside inference mode

    # -- the two directions -----------------------------------------------------------------
    def transform(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``y`` and ``log |det dy/du|``: one parallel pass per layer."""
        log_det = u.new_zeros(u.shape[:-1])
        for layer in self.layers:
            u, layer_log_det = layer(u)
            log_det = log_det + layer_log_det
        return u, log_det

    def solve(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``u`` with ``transform(u) == y`` and ``log |det dy/du|``, by fast sequential solves."""
        plans = self._plans()
        if self.cuda_graphs and y.is_cuda and not torch.is_grad_enabled():
            return self._graphs(lambda v: self._solve(v, plans), y, self._signature(plans))
        return self._solve(y, plans)

    def solve_reference(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The same as :meth:`solve` by D full MADE passes per layer (the textbook loop)."""
        log_det = y.new_zeros(y.shape[:-1])
        for layer in reversed(self.layers):
            if isinstance(layer, MaskedAffineAutoregressive):
                y, layer_log_det = layer.inverse_reference(y)
            else:
                y, layer_log_det = layer.inverse(y)
            log_det = log_det + layer_log_det
        return y, log_det

    def _solve(self, y: Tensor, plans: list[SolvePlan | None]) -> tuple[Tensor, Tensor]:
        log_det = y.new_zeros(y.shape[:-1])
        for layer, plan in zip(reversed(self.layers), reversed(plans), strict=True):
            y, layer_log_det = layer.inverse(y, plan) if plan else layer.inverse(y)
            log_det = log_det + layer_log_det
        return y, log_det

    def _plans(self) -> list[SolvePlan | None]:
        return [
            layer.plan() if isinstance(layer, MaskedAffineAutoregressive) else None
            for layer in self.layers
        ]

    def _signature(self, plans: list[SolvePlan | None]) -> Hashable:
        """What a captured graph depends on: tensor addresses and the degree layout."""
        addresses = tuple(t.data_ptr() for t in (*self.parameters(), *self.buffers()))
        layout = tuple(
            (tuple(plan.degrees.tolist()), plan.ends) for plan in plans if plan is not None
        )
        return addresses, layout

    def clear_graphs(self) -> None:
        self._graphs.clear()

    # -- the base distribution --------------------------------------------------------------
    @staticmethod
    def base_log_prob(z: Tensor) -> Tensor:
        """``log N(z; 0, I)`` per row."""
        return standard_normal_log_prob(z)

    def noise(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` draws of ``z ~ N(0, T^2 I)`` on the flow's device and dtype."""
        like = next(self.parameters())
        z = torch.randn(n, self.features, generator=generator, device=like.device, dtype=like.dtype)
        return z * temperature if temperature != 1.0 else z
