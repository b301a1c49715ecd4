"""FID and KID between real and generated images, from Inception-v3 pool features.

The features are the 2048-d average-pool ("pool3") outputs of torchvision's ``inception_v3``
with its ``IMAGENET1K_V1`` weights. They are used only when they already sit in torch hub's
cache (``torch.hub.get_dir()/checkpoints/``): scoring never downloads unless asked with
``GENTOOL_FID_DOWNLOAD=1``. ``GENTOOL_FID=0`` skips the two metrics altogether.

FID numbers are comparable only between runs that use the same network and resizing: the
usual "TF-FID" (pytorch-fid, clean-fid, torch-fidelity) uses the weights ported from
TensorFlow's 2015 Inception graph, which differ from torchvision's, so the values here are
labelled with the network that produced them (:data:`FID_NETWORK`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gentool.progress import stderr_console

__all__ = [
    "DOWNLOAD_ENV",
    "ENABLE_ENV",
    "FID_NETWORK",
    "FeatureDistance",
    "InceptionFeatures",
    "fid_kid_metrics",
    "frechet_distance",
    "gaussian_statistics",
    "inception_weights_path",
    "kernel_inception_distance",
    "sqrtm_psd",
]

#: How the outputs label the network, since FID values depend on it.
FID_NETWORK = "torchvision inception_v3 IMAGENET1K_V1"
DOWNLOAD_ENV = "GENTOOL_FID_DOWNLOAD"  # "1": download the weights once if missing
ENABLE_ENV = "GENTOOL_FID"  # "0": skip FID and KID
INPUT_SIZE = 299
FEATURE_DIM = 2048
# torchvision's ImageClassification transform for these weights normalises so.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- the feature extractor ------------------------------------------------------------------------
def _weights_enum() -> Any:
    from torchvision.models import Inception_V3_Weights

    return Inception_V3_Weights.IMAGENET1K_V1


def inception_weights_path() -> Path:
    """Where torch hub keeps (or would keep) the Inception-v3 weights file."""
    name = _weights_enum().url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _feature_network(net: nn.Module) -> nn.Module:
    """Inception-v3 without its auxiliary classifier and with the pool features as output."""
    net.aux_logits, net.AuxLogits = False, None
    net.fc = nn.Identity()  # the 2048 pool features, not the 1000 class logits
    return net


class InceptionFeatures(nn.Module):
    """Inception-v3's 2048-d pool features of images in [0, 1], as FID and KID use them.

    Images are resized to 299x299 (bilinear, antialiased when shrinking, as torchvision's
    ``Resize``), grey ones repeated to RGB, and normalised with the ImageNet mean and std of
    torchvision's transforms for these weights; the network's ``transform_input``, which
    torchvision switches on for them, then maps that to the [-1, 1] range it was trained on.

    References:
        Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
        CVPR 2016, https://arxiv.org/abs/1512.00567.

    Arguments:
        pretrained: load torchvision's ``IMAGENET1K_V1`` weights (from the hub cache, or
            downloaded when ``download``); False leaves random weights (tests only).
        download: allow fetching the weights when they are not cached.
    """

    def __init__(self, pretrained: bool = True, download: bool = False) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        build = {"weights": None, "aux_logits": True, "transform_input": True}
        if pretrained:
            if not download and not inception_weights_path().is_file():
                raise FileNotFoundError(inception_weights_path())
            # torchvision's loader: reads the hub cache, downloads (hash-checked) if missing.
            # The file is a torch pickle; weights_only restricts it to tensors and plain
            # containers (torch hub's default would run whatever the file holds).
            # torch hub announces a download on stdout; keep stdout for results (--json).
            with contextlib.redirect_stdout(sys.stderr):
                state = _weights_enum().get_state_dict(
                    progress=True, check_hash=True, weights_only=True
                )
            # Built on the meta device and given the loaded tensors: no time spent drawing
            # 27M random weights that would be overwritten.
            with torch.device("meta"):
                net = _feature_network(inception_v3(**build, init_weights=False))
            unused = ("AuxLogits.", "fc.")
            kept = type(state)((k, v) for k, v in state.items() if not k.startswith(unused))
            if hasattr(state, "_metadata"):  # layer versions, as torchvision loads them
                kept._metadata = state._metadata
            net.load_state_dict(kept, assign=True)
            if any(t.is_meta for t in net.state_dict().values()):
                raise RuntimeError("the weights file does not cover the whole network")
        else:
            net = _feature_network(inception_v3(**build, init_weights=False))  # tests only
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # always eval: batch norm statistics, no dropout

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` images in [0, 1] (C = 1 or 3) -> ``[B, 2048]`` float32 features."""
        x = images.to(self.mean.device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(
                x,
                size=(INPUT_SIZE, INPUT_SIZE),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        x = (x.clamp(0, 1) - self.mean) / self.std
        return self.net(x).float()


# -- the metrics on features ----------------------------------------------------------------------
def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased, N - 1) covariance of ``[N, D]`` features, in float64."""
    x = features.double()
    if len(x) < 2:
        raise ValueError("FID needs at least two images per set")
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (len(x) - 1)


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (float64).

    From its eigendecomposition; eigenvalues that rounding made slightly negative count as 0.
    """
    symmetric = (matrix.double() + matrix.double().T) / 2
    values, vectors = torch.linalg.eigh(symmetric)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(
    mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor
) -> float:
    """The Fréchet (2-Wasserstein) distance between N(mean1, cov1) and N(mean2, cov2):
    ``|m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    ``tr (S1 S2)^(1/2)`` is computed as ``tr (S1^(1/2) S2 S1^(1/2))^(1/2)``: the two matrices
    are similar, and the second is symmetric PSD, so symmetric eigendecompositions in float64
    suffice, with no complex parts to discard as a general ``sqrtm`` of ``S1 S2`` leaves.

    References:
        Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
        Equilibrium", NeurIPS 2017, https://arxiv.org/abs/1706.08500.

    Example:
        >>> m, s = torch.zeros(2), torch.eye(2)
        >>> round(frechet_distance(m, s, m + 1, 4 * s), 6)  # |1,1|^2 + 2 * (2 - 1)^2
        4.0
    """
    mean1, mean2 = mean1.double(), mean2.double()
    cov1, cov2 = cov1.double(), cov2.double()
    root1 = sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    middle = (middle + middle.T) / 2
    trace_root = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()
    diff = mean1 - mean2
    value = diff.dot(diff) + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_root
    return max(float(value), 0.0)


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(x . y / d + 1)^3``, the kernel of KID."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def _unbiased_mmd2(
    within_x: torch.Tensor, within_y: torch.Tensor, between: torch.Tensor, m: int
) -> torch.Tensor:
    """The unbiased MMD^2 estimate of two sets of ``m`` points from their kernel sums: off the
    diagonal within each set, and everything between the sets."""
    return (within_x + within_y) / (m * (m - 1)) - 2 * between / (m * m)


def _block_sums(kernel: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``sum(kernel[r][:, c])`` for each subset's 0/1 indicators ``r``, ``c`` (one matmul)."""
    return ((rows @ kernel) * cols).sum(1)


#: Up to this many kernel entries per set, the whole kernel matrices are computed once.
_WHOLE_GRAM_LIMIT = 2**23


def kernel_inception_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """KID: the unbiased MMD^2 with the cubic polynomial kernel ``(x.y/d + 1)^3``, averaged
    over ``subsets`` random subsets (drawn without replacement) of each feature set.

    The subset size is ``min(subset_size, n // 2)`` for the smaller set of ``n``: the usual
    1000 once there are 2000 images, and half the set below that so the subsets differ and
    their spread (``kid_std``) means something. The estimate is unbiased at any size.

    References:
        Bińkowski et al., "Demystifying MMD GANs", ICLR 2018, https://arxiv.org/abs/1801.01401.

    Returns ``{"kid": mean, "kid_std": std over subsets, "kid_subset_size": m}``.
    """
    x, y = real.double(), fake.double()
    m = min(subset_size, len(x) // 2, len(y) // 2)
    if m < 2:
        raise ValueError("KID needs at least four images per set")
    generator = torch.Generator().manual_seed(seed)
    picks = [
        (
            torch.randperm(len(x), generator=generator)[:m],
            torch.randperm(len(y), generator=generator)[:m],
        )
        for _ in range(subsets)
    ]
    if max(len(x), len(y)) ** 2 <= _WHOLE_GRAM_LIMIT:
        # Test sets of a few thousand images: each kernel matrix once, then every subset's
        # sums as one product with indicator vectors, instead of a hundred m x m x 2048
        # products.
        ind_x = torch.zeros(subsets, len(x), dtype=x.dtype)
        ind_y = torch.zeros(subsets, len(y), dtype=y.dtype)
        for i, (px, py) in enumerate(picks):
            ind_x[i, px], ind_y[i, py] = 1, 1
        ind_x, ind_y = ind_x.to(x.device), ind_y.to(y.device)
        k_xx, k_yy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
        within_x = _block_sums(k_xx, ind_x, ind_x) - ind_x @ k_xx.diagonal()
        within_y = _block_sums(k_yy, ind_y, ind_y) - ind_y @ k_yy.diagonal()
        between = _block_sums(_polynomial_kernel(x, y), ind_x, ind_y)
        values = _unbiased_mmd2(within_x, within_y, between, m)
    else:
        estimates = []
        for px, py in picks:
            sx, sy = x[px.to(x.device)], y[py.to(y.device)]
            k_xx, k_yy = _polynomial_kernel(sx, sx), _polynomial_kernel(sy, sy)
            estimates.append(
                _unbiased_mmd2(
                    k_xx.sum() - k_xx.diagonal().sum(),
                    k_yy.sum() - k_yy.diagonal().sum(),
                    _polynomial_kernel(sx, sy).sum(),
                    m,
                )
            )
        values = torch.stack(estimates)
    # Population std over subsets, as Bińkowski et al.'s and torch-fidelity's code report.
    return {
        "kid": float(values.mean()),
        "kid_std": float(values.std(correction=0)),
        "kid_subset_size": m,
    }


# -- the accumulator scoring feeds ----------------------------------------------------------------
class FeatureDistance:
    """FID and KID between a set of real and a set of generated images (a translation
    direction's, say), fed batch by batch.

    Arguments:
        features: the extractor, shared between directions.
        chunk: images per Inception pass (bounds memory at any scoring batch size).
    """

    network = FID_NETWORK

    def __init__(self, features: nn.Module, chunk: int = 32) -> None:
        self.features, self.chunk = features, chunk
        self.real: list[torch.Tensor] = []
        self.fake: list[torch.Tensor] = []

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.features(part).cpu() for part in images.split(self.chunk)])

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        if len(real):
            self.real.append(self._embed(real))
        if len(fake):
            self.fake.append(self._embed(fake))

    def compute(self) -> dict[str, float]:
        real = torch.cat(self.real) if self.real else torch.zeros(0, FEATURE_DIM)
        fake = torch.cat(self.fake) if self.fake else torch.zeros(0, FEATURE_DIM)
        result: dict[str, Any] = {"fid_real_images": len(real), "fid_fake_images": len(fake)}
        if min(len(real), len(fake)) < 4:
            return result
        result["fid"] = frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))
        result.update(kernel_inception_distance(real, fake))
        return result


def fid_kid_metrics(names: tuple[str, ...], device: torch.device) -> dict[str, FeatureDistance]:
    """One FID/KID accumulator per name (a translation direction, say), sharing one Inception
    network on ``device``; none, after one line on stderr, when the weights are not cached
    (or ``GENTOOL_FID=0``)."""
    if os.environ.get(ENABLE_ENV, "1").strip().lower() in ("0", "no", "off", "false"):
        return {}
    download = os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "yes", "on", "true")
    path = inception_weights_path()
    if not path.is_file() and not download:
        stderr_console().print(
            f"FID/KID skipped: the Inception-v3 weights are not in {path.parent} "
            f"(fetch them once with {DOWNLOAD_ENV}=1, or copy {path.name} there)",
            highlight=False,
            soft_wrap=True,
        )
        return {}
    try:
        features = InceptionFeatures(pretrained=True, download=download).to(device)
    except Exception as err:  # optional metric: any unreadable weights file skips it, said once
        reason = _load_failure(err, path)
        stderr_console().print(
            f"FID/KID skipped: cannot load the Inception-v3 weights ({path}): {reason}",
            highlight=False,
            soft_wrap=True,
        )
        return {}
    return {name: FeatureDistance(features) for name in names}


def _load_failure(err: BaseException, path: Path) -> str:
    """Why the weights did not load, in words. Unpickling a file that is not torch weights
    fails with errors that say nothing alone (``KeyError(174812789)``, a bare ``EOFError``)."""
    text = str(err).strip()
    first = text.splitlines()[0][:200] if text else ""
    if isinstance(err, OSError) or not path.is_file():  # no network, a file that cannot open
        return first or type(err).__name__
    detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return f"{detail}; if the file is damaged, delete it and fetch it again with {DOWNLOAD_ENV}=1"
