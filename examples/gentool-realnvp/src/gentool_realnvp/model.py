"""The ``realnvp`` family's model: gentool's density model around a :class:`RealNVP` flow."""

from __future__ import annotations

from gentool.api import DensityModel
from torch import nn

from gentool_realnvp.coupling import RealNVP, base_mask

__all__ = ["RealNVPModel"]


class RealNVPModel(DensityModel):
    """RealNVP on images, trained by maximum likelihood like ``maf``.

    :class:`gentool.api.DensityModel` does the rest: dequantisation, the logit transform,
    the training step, NLL and bits/dim in data space, sampling and scoring. A flow family
    only says which flow to build.
    """

    def build_flow(self, features: int) -> nn.Module:
        config = self.config
        # The base class has set self.data already: the mask needs the image's shape.
        mask = base_mask(config.mask, self.data.shape)
        return RealNVP(
            mask,
            layers=config.layers,
            hidden=config.hidden_features,
            coupling=config.coupling,
            log_scale_bound=config.log_scale_bound,
        )
