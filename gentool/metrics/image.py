"""Per-image fidelity metrics against a target: L1, PSNR and SSIM, for images in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gaussian_window", "l1_error", "psnr", "ssim"]

#: PSNR is capped here (identical images would give infinity, which JSON cannot carry).
MAX_PSNR = 100.0


def l1_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image, ``[B]``."""
    return (x.float() - y.float()).abs().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``[B]``, capped at :data:`MAX_PSNR`.

    Example:
        >>> x = torch.zeros(1, 1, 4, 4)
        >>> round(float(psnr(x, x + 0.1)), 3)
        20.0
    """
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    floor = data_range**2 / 10 ** (MAX_PSNR / 10)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(floor))


def gaussian_window(
    size: int = 11, sigma: float = 1.5, device: torch.device | str | None = None
) -> torch.Tensor:
    """A normalised 1-D gaussian of ``size`` taps (the 2-D window is its outer product)."""
    positions = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    weights = torch.exp(-(positions**2) / (2 * sigma**2))
    return weights / weights.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image, ``[B]``, averaged over channels and positions.

    Local statistics use an 11x11 gaussian window (sigma 1.5) over the valid region only,
    population (not sample) covariances, and the constants ``(k1 L)^2``, ``(k2 L)^2``: the
    settings of the SSIM paper, equal to scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``. Images smaller than
    the window use the largest odd window that fits.

    References:
        Wang et al., "Image Quality Assessment: From Error Visibility to Structural
        Similarity", IEEE TIP 2004, https://doi.org/10.1109/TIP.2003.819861.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> ssim(x, x)
        tensor([1., 1.])
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim needs two [B, C, H, W] tensors of one shape, got {x.shape}, {y.shape}"
        )
    channels, height, width = x.shape[1:]
    size = min(window, height, width)
    size -= 1 - size % 2  # an odd window keeps the centre on a pixel
    # float64 keeps E[x^2] - E[x]^2 from cancelling badly on near-constant regions.
    x, y = x.double(), y.double()
    taps = gaussian_window(size, sigma, x.device)
    rows = taps.view(1, 1, size, 1).expand(channels, 1, size, 1)
    cols = taps.view(1, 1, 1, size).expand(channels, 1, 1, size)

    def local_mean(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(image, rows, groups=channels), cols, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    similarity = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return similarity.flatten(1).mean(1).float()
