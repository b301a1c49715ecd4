"""Batch normalisation as an invertible flow layer, with its log-determinant."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BatchNorm"]


class BatchNorm(nn.Module):
    r"""The invertible batch normalisation of MAF.

    .. math:: z = \frac{x - m}{\sqrt{v + \epsilon}} \exp(\log\gamma) + \beta,
       \qquad \log|\det J| = \sum_i \log\gamma_i - \tfrac12 \log(v_i + \epsilon)

    In training mode the forward map uses the batch mean and variance (gradients flow
    through them) and updates running averages; in eval mode it uses the running averages.
    The inverse always uses the running averages: it serves sampling, after training, and a
    fixed map is what makes ``inverse(forward(x)) == x`` hold in eval mode.

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        features: the number of features.
        momentum: weight of the newest batch in the running averages.
        eps: added to the variance for stability.

    Example:
        >>> bn = BatchNorm(3)
        >>> x = 2.0 + 3.0 * torch.randn(100, 3)
        >>> z, log_det = bn(x)  # training mode: batch statistics
        >>> torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
        True
        >>> _ = bn.eval()
        >>> back, _ = bn.inverse(bn(x)[0])
        >>> torch.allclose(back, x, atol=1e-4)
        True
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def extra_repr(self) -> str:
        return f"{self.beta.shape[0]}, momentum={self.momentum}, eps={self.eps}"

    def _statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        flat = x.reshape(-1, x.shape[-1])
        mean, var = flat.mean(0), flat.var(0, unbiased=False)
        with torch.no_grad():
            # The running variance is the unbiased estimate, as in torch.nn.BatchNorm1d.
            n = flat.shape[0]
            unbiased = var * n / max(n - 1, 1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
        return mean, var

    def _log_det(self, var: Tensor, batch_shape: torch.Size) -> Tensor:
        log_det = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return log_det.expand(batch_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` and ``log |det dz/dx|`` per row."""
        mean, var = self._statistics(x)
        z = (x - mean) * torch.rsqrt(var + self.eps) * torch.exp(self.log_gamma) + self.beta
        return z, self._log_det(var, x.shape[:-1])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` and ``log |det dz/dx|`` (of the forward map) per row, from running averages."""
        var = self.running_var
        x = (z - self.beta) * torch.exp(-self.log_gamma) * torch.sqrt(var + self.eps)
        return x + self.running_mean, self._log_det(var, z.shape[:-1])
