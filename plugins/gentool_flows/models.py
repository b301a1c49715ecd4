"""The flow families' models: a MADE, MAF or IAF inside gentool's density bookkeeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gentool.density import DensityModel
from gentool_flows.flow import AutoregressiveFlow
from gentool_flows.iaf import IAF
from gentool_flows.maf import MAF

__all__ = ["IAFModel", "MADEModel", "MAFModel"]


class _FlowModel(DensityModel):
    """Adds the opt-in CUDA graphs and the timings ``gentool bench`` reports to a flow."""

    def __init__(self, config: Any, data: Any, device: torch.device) -> None:
        super().__init__(config, data, device)
        self.flow.cuda_graphs = bool(getattr(config, "cuda_graphs", False))

    def benchmarks(self, batch_size: int) -> dict[str, tuple[Callable[[], Any], int]]:
        """The flow's sequential direction (MAF: sampling, IAF: density), fast and plain.

        ``gentool bench`` runs these in eval and inference mode; the plain loop is the
        textbook D full MADE passes per layer that other flow libraries run.
        """
        flow: AutoregressiveFlow = self.flow
        noise = flow.noise(batch_size)
        return {
            "parallel_pass": (lambda: flow.transform(noise), batch_size),
            "sequential_fast": (lambda: flow.solve(noise), batch_size),
            "sequential_plain_loop": (lambda: flow.solve_reference(noise), batch_size),
        }


class MADEModel(_FlowModel):
    """A single Gaussian MADE density: one autoregressive layer (the ``made`` family)."""

    def build_flow(self, features: int) -> nn.Module:
        c = self.config
        return MAF(
            features,
            num_layers=1,
            hidden_features=c.hidden_features,
            order=c.order,
            batch_norm=False,
            log_scale_clamp=c.log_scale_clamp,
            activation=c.activation,
            seed=c.seed,
        )


class MAFModel(_FlowModel):
    """Masked autoregressive flow on images (the ``maf`` family)."""

    def build_flow(self, features: int) -> nn.Module:
        c = self.config
        return MAF(
            features,
            num_layers=c.num_layers,
            hidden_features=c.hidden_features,
            order=c.order,
            batch_norm=c.batch_norm,
            log_scale_clamp=c.log_scale_clamp,
            activation=c.activation,
            seed=c.seed,
        )


class IAFModel(_FlowModel):
    """Inverse autoregressive flow on images (the ``iaf`` family); its density is sequential."""

    def build_flow(self, features: int) -> nn.Module:
        c = self.config
        return IAF(
            features,
            num_layers=c.num_layers,
            hidden_features=c.hidden_features,
            order=c.order,
            log_scale_clamp=c.log_scale_clamp,
            activation=c.activation,
            seed=c.seed,
        )
