"""Shared parts of the digits benchmarks: the fixed split, exact KDE, GMM selection, flows.

Every baseline here works on the same numbers the flows see. Pixels are integers
k in 0..16 (``L = 17`` levels); dequantised they are ``y = (k + u) / L`` in (0, 1)^64. A
density q on y gives the discrete image the bound ``-log P(k) <= -log q(y) + D log L``,
averaged over the noise u (or tightened by importance weighting over several draws), which
is exactly how :mod:`gentool.density` reports a flow's NLL.

scikit-learn's ``KernelDensity`` evaluates its kernel sum with a KD/ball tree and an
``atol``/``rtol`` approximation; in 64 dimensions at small bandwidths its log-densities are
wrong (scikit-learn issues 25799 and 7492), so :func:`kde_log_density` computes the kernel
sum exactly by a brute-force log-sum-exp.
"""

from __future__ import annotations

import contextlib
import io
import math
import platform

import numpy as np
import torch

__all__ = [
    "DIMS",
    "LEVELS",
    "cli",
    "dequantize",
    "digits_split",
    "fit_gmm",
    "kde_bandwidth_cv",
    "kde_log_density",
    "logit",
    "versions",
]

LEVELS = 17
DIMS = 64


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """gentool's own fixed split of digits: integer pixels [N, 64] in 0..16 and labels."""
    from gentool.data.base import DataOptions
    from gentool.data.digits import load

    source = load(DataOptions())
    out = []
    for name in ("train", "test"):
        split = source.split(name)
        out += [split.images.reshape(len(split), -1).numpy().astype(np.int64), split.labels.numpy()]
    return out[0], out[1], out[2], out[3]


def dequantize(k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform dequantisation ``y = (k + u) / L``, u ~ U(0, 1), as the flows do."""
    return (k + rng.random(k.shape)) / LEVELS


def logit(y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``w = logit(lam + (1 - 2 lam) y)`` and ``sum log |dw/dy|`` per row (as gentool.density)."""
    s = lam + (1.0 - 2.0 * lam) * y
    w = np.log(s) - np.log1p(-s)
    log_det = (math.log1p(-2.0 * lam) - np.log(s) - np.log1p(-s)).sum(axis=1)
    return w, log_det


# -- exact kernel density ---------------------------------------------------------------------
def kde_log_density(
    train: np.ndarray, query: np.ndarray, bandwidth: float, chunk: int = 512
) -> np.ndarray:
    """Exact Gaussian KDE: ``logsumexp_i -|x - x_i|^2 / 2h^2 - log n - D/2 log(2 pi h^2)``."""
    a = torch.as_tensor(train, dtype=torch.float64)
    n, d = a.shape
    norm = -math.log(n) - 0.5 * d * math.log(2.0 * math.pi * bandwidth**2)
    out = []
    for start in range(0, len(query), chunk):
        b = torch.as_tensor(query[start : start + chunk], dtype=torch.float64)
        sq = torch.cdist(b, a).square()
        out.append(torch.logsumexp(-sq / (2.0 * bandwidth**2), dim=1) + norm)
    return torch.cat(out).numpy()


def kde_bandwidth_cv(
    x: np.ndarray, bandwidths: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[float, dict[float, float]]:
    """The bandwidth of highest mean held-out log-likelihood over ``folds`` (exact KDE)."""
    from sklearn.model_selection import KFold

    scores = {}
    for h in bandwidths:
        total = 0.0
        for fit_index, held_index in KFold(folds, shuffle=True, random_state=seed).split(x):
            total += kde_log_density(x[fit_index], x[held_index], float(h)).sum()
        scores[float(h)] = total / len(x)
    best = max(scores, key=scores.get)
    return best, scores


# -- Gaussian mixtures ------------------------------------------------------------------------
def fit_gmm(
    x: np.ndarray,
    components: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    covariances: tuple[str, ...] = ("full", "diag"),
    criterion: str = "bic",
    seed: int = 0,
):
    """The GaussianMixture of lowest BIC (or best 5-fold CV likelihood) over a small grid."""
    from sklearn.mixture import GaussianMixture
    from sklearn.model_selection import KFold

    def make(n: int, cov: str) -> GaussianMixture:
        return GaussianMixture(
            n, covariance_type=cov, reg_covar=1e-4, n_init=1, max_iter=200, random_state=seed
        )

    results = {}
    for cov in covariances:
        for n in components:
            if n > len(x) // 4:
                continue
            if criterion == "bic":
                results[(n, cov)] = make(n, cov).fit(x).bic(x)
            else:
                held = []
                for a, b in KFold(5, shuffle=True, random_state=seed).split(x):
                    held.append(make(n, cov).fit(x[a]).score(x[b]))
                results[(n, cov)] = -float(np.mean(held))
    n, cov = min(results, key=results.get)
    return make(n, cov).fit(x), {"components": n, "covariance": cov, criterion: results[(n, cov)]}


# -- the machine ------------------------------------------------------------------------------
def cli(args: list[str]) -> str:
    """Run ``gentool ARGS`` in this process and return its stdout (stderr passes through)."""
    from gentool.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(args)
    if status != 0:
        raise RuntimeError(f"gentool {' '.join(args)} exited with {status}")
    return buffer.getvalue()


def versions() -> dict[str, str]:
    import sklearn

    import gentool
    from gentool.bench import device_name

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "gentool": gentool.__version__,
        "cpu": device_name(torch.device("cpu")),
        "threads": str(torch.get_num_threads()),
    }
