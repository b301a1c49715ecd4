"""Localization metrics of anomaly maps against masks: pixel AUROC, AUPRO, F1-max, thresholds.

Maps are ``[N, H, W]`` (higher = more anomalous), masks ``[N, H, W]`` or ``[N, 1, H, W]`` of
0/1, as torch tensors or numpy arrays. Every curve here is exact: one sort of all the scores,
then running sums, so each distinct score is a threshold and there is no binning error. An
item is flagged at threshold ``t`` when its score is ``>= t`` (scikit-learn's convention),
except for :func:`threshold_from_normal`, whose threshold passes every score ``<= t``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["aupro", "f1_max", "pixel_auroc", "pro_curve", "threshold_from_normal"]

Array = torch.Tensor | np.ndarray


def _numpy(x: Array) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()  # numpy reads host memory only, and has no bfloat16
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return x.numpy()
    return np.asarray(x)


def _scores(x: Array) -> np.ndarray:
    """Float scores with infinities pulled in to just beyond the finite ones."""
    s = _numpy(x)
    if s.dtype.kind != "f" or s.dtype.itemsize < 4:
        s = s.astype(np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: the model produced no usable score there")
    infinite = np.isinf(s)
    if infinite.any():
        # Only the order matters to these metrics, and an NLL beyond float range is +inf:
        # infinities become the next values past the finite extremes, which keeps the order.
        finite = s[~infinite]
        low, high = (finite.min(), finite.max()) if finite.size else (s.dtype.type(0),) * 2
        s = np.where(s == np.inf, np.nextafter(high, np.inf), s)
        s = np.where(s == -np.inf, np.nextafter(low, -np.inf), s)
    return s


def _scores_and_labels(scores: Array, labels: Array) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as floats, ``labels`` as booleans, of one shape (a channel axis of 1 dropped)."""
    s, y = _scores(scores), _numpy(labels)
    s, y = (a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a for a in (s, y))
    if s.shape != y.shape:
        raise ValueError(f"scores {list(s.shape)} and labels {list(y.shape)} differ in shape")
    if y.dtype != bool:
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("labels and masks must hold only 0 and 1 (binarise them first)")
        y = y == 1
    return s, y


def _running_sums(scores: np.ndarray, *weights: np.ndarray) -> list[np.ndarray]:
    """The distinct scores from the highest down, and for each the sum of every weight over
    the items scoring at least that much: one sort instead of a pass per threshold."""
    order = np.argsort(scores.ravel())[::-1]
    ranked = scores.ravel()[order]
    # Tied scores are one threshold: keep the running sums where each run of ties ends.
    last = np.append(ranked[1:] != ranked[:-1], True)
    return [ranked[last]] + [np.cumsum(w.ravel()[order])[last] for w in weights]


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under ``y(x)`` (``x`` ascending from 0) from 0 to ``limit``, the
    curve cut at ``limit`` by linear interpolation."""
    end = int(np.searchsorted(x, limit, side="right"))
    xs, ys = x[:end], y[:end]
    if end < len(x) and xs[-1] < limit:
        x0, y0, x1, y1 = x[end - 1], y[end - 1], x[end], y[end]
        xs = np.append(xs, limit)
        ys = np.append(ys, y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2)


def pixel_auroc(maps: Array, masks: Array) -> float:
    """ROC AUC over all the pixels of all the images, ties counted half.

    The same number as scikit-learn's ``roc_auc_score`` on the flattened arrays, computed
    from one sort with whole-number trapezoids (exact up to the final division): about three
    times faster on MVTec-sized splits. Infinite scores are pulled in to the finite range.

    Arguments:
        maps: Anomaly maps ``[N, H, W]``, higher = more anomalous.
        masks: Ground truth ``[N, H, W]`` or ``[N, 1, H, W]``, 1 = anomalous pixel.

    Raises:
        ValueError: When the masks hold no anomalous or no normal pixel (AUROC is undefined).

    Example:
        >>> maps = torch.tensor([[[0.1, 0.8], [0.4, 0.9]]])
        >>> pixel_auroc(maps, torch.tensor([[[0, 1], [1, 0]]]))
        0.5
    """
    scores, anomalous = _scores_and_labels(maps, masks)
    n_anomalous = int(np.count_nonzero(anomalous))
    n_normal = anomalous.size - n_anomalous
    if n_anomalous == 0 or n_normal == 0:
        raise ValueError("pixel AUROC needs masks with both anomalous and normal pixels")
    _, false_pos, true_pos = _running_sums(scores, ~anomalous, anomalous)
    false_pos, true_pos = np.append(0, false_pos), np.append(0, true_pos)
    twice_area = int(np.sum(np.diff(false_pos) * (true_pos[1:] + true_pos[:-1])))
    return twice_area / (2 * n_anomalous * n_normal)


def pro_curve(maps: Array, masks: Array) -> tuple[np.ndarray, np.ndarray]:
    """The per-region overlap (PRO) curve: false-positive rate and PRO at every threshold.

    A region is a connected component of one image's mask, pixels joined to their 8
    neighbours (the MVTec AD evaluation code's ``np.ones((3, 3))`` structuring element).
    At a threshold, PRO is the mean over all regions of all images of the fraction of the
    region flagged, so a small defect weighs as much as a large one; the false-positive rate
    is over the normal pixels of all images, defect-free ones included. The curve runs from
    ``(0, 0)`` (nothing flagged) through every distinct score to ``(1, 1)``.

    References:
        | The MVTec Anomaly Detection Dataset (Bergmann et al., IJCV 2021)
        | https://doi.org/10.1007/s11263-020-01400-4

    Arguments:
        maps: Anomaly maps ``[N, H, W]``, higher = more anomalous.
        masks: Ground truth ``[N, H, W]`` or ``[N, 1, H, W]``, 1 = anomalous pixel.

    Returns:
        The false-positive rates and the PRO values, both ascending, ``[T + 1]`` for ``T``
        distinct scores.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.1], [0.5, 0.3]]])
        >>> fpr, pro = pro_curve(maps, torch.tensor([[[1, 0], [0, 0]]]))
        >>> fpr.round(3).tolist(), pro.tolist()
        ([0.0, 0.0, 0.333, 0.667, 1.0], [0.0, 1.0, 1.0, 1.0, 1.0])
    """
    from scipy import ndimage

    scores, anomalous = _scores_and_labels(maps, masks)
    if scores.ndim != 3:
        raise ValueError(f"expected maps [N, H, W], got {list(scores.shape)}")
    # 8-connectivity within each image and none across images: one call labels the stack.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    regions, n_regions = ndimage.label(anomalous, structure)
    n_normal = anomalous.size - int(np.count_nonzero(anomalous))
    if n_regions == 0 or n_normal == 0:
        raise ValueError("AUPRO needs masks with both anomalous and normal pixels")
    area = np.bincount(regions.ravel())
    # Each pixel of region r adds 1 / (area_r * regions) to PRO once it is flagged.
    share = 1.0 / (area * n_regions)
    share[0] = 0.0
    _, false_pos, overlap = _running_sums(scores, regions == 0, share[regions])
    fpr = np.append(0.0, false_pos / n_normal)
    # Rounding in the running sum may end a hair above 1.
    return fpr, np.append(0.0, np.minimum(overlap, 1.0))


def aupro(maps: Array, masks: Array, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve up to a false-positive rate of ``fpr_limit``, over ``fpr_limit``.

    The curve is :func:`pro_curve`, exact at every distinct score; it is integrated with the
    trapezoidal rule and cut at ``fpr_limit`` by interpolating its segment there, as the
    MVTec AD evaluation code does. 1 is a perfect map; a map that flags no defect pixel
    before reaching the limit scores 0.

    References:
        | The MVTec Anomaly Detection Dataset (Bergmann et al., IJCV 2021)
        | https://doi.org/10.1007/s11263-020-01400-4

    Arguments:
        maps: Anomaly maps ``[N, H, W]``, higher = more anomalous.
        masks: Ground truth ``[N, H, W]`` or ``[N, 1, H, W]``, 1 = anomalous pixel.
        fpr_limit: The false-positive rate the integral stops at, in (0, 1]; 0.3 is the
            benchmark's.

    Raises:
        ValueError: When the masks hold no anomalous or no normal pixel.

    Example:
        >>> masks = torch.zeros(2, 8, 8)
        >>> masks[0, 2:4, 2:4] = 1
        >>> aupro(masks + 0.1 * torch.rand(2, 8, 8), masks)
        1.0
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must lie in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(maps, masks)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def f1_max(scores: Array, labels: Array) -> tuple[float, float]:
    """The best F1 over all thresholds, and the threshold that achieves it.

    An *oracle* figure: the threshold is chosen on the test labels themselves, so it shows
    what the scores could reach, not what a deployed detector would. Predict with
    :func:`threshold_from_normal` instead. Works on image scores ``[N]`` and on maps and
    masks alike (every pixel an item).

    Arguments:
        scores: Scores, higher = more anomalous.
        labels: 0/1 of the same shape (``[N, 1, H, W]`` masks are fine), 1 = anomalous.

    Returns:
        ``(f1, threshold)``: items scoring ``>= threshold`` are flagged; among thresholds
        with equal F1, the highest.

    Raises:
        ValueError: When no label is 1 (F1 is undefined).

    Example:
        >>> f1_max(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        (0.8, 0.35)
    """
    s, y = _scores_and_labels(scores, labels)
    n_anomalous = int(np.count_nonzero(y))
    if n_anomalous == 0:
        raise ValueError("F1 needs at least one anomalous item")
    thresholds, false_pos, true_pos = _running_sums(s, ~y, y)
    # F1 = 2 TP / (2 TP + FP + FN), and TP + FN is every anomalous item.
    f1 = 2 * true_pos / (true_pos + false_pos + n_anomalous)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def threshold_from_normal(scores: Array, quantile: float = 0.99) -> float:
    """An anomaly threshold from the scores of held-out *normal* items: no test label used.

    The threshold is the ``k``-th smallest of the ``n`` scores, ``k = ceil((n + 1) *
    quantile)``, the split-conformal quantile: when the held-out items and a new normal one
    are exchangeable (drawn alike), the new one scores above the threshold with probability
    at most ``1 - quantile``, whatever the scores' distribution. So ``quantile`` is the one
    error rate that can be set without anomalies, the false alarms: 0.99 allows one in a
    hundred. A mean + k·std rule would assume gaussian scores, which NLLs are not. With
    fewer than ``quantile / (1 - quantile)`` items (99 at 0.99), ``k`` would pass ``n`` and
    the threshold is the largest score, which bounds false alarms by ``1 / (n + 1)`` only.

    Arguments:
        scores: Held-out normal items' scores, any shape (image scores, or map pixels for
            a pixel threshold); higher = more anomalous.
        quantile: The fraction of normal items to pass, in (0, 1]; 1 gives the maximum.

    Returns:
        The threshold: predict anomalous where ``score > threshold``.

    Example:
        >>> threshold_from_normal(torch.arange(1.0, 200.0), 0.99)
        198.0
        >>> threshold_from_normal(torch.tensor([0.2, 0.5, 0.3]))  # too few: the maximum
        0.5
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
    s = _numpy(scores).astype(np.float64).ravel()
    if s.size == 0:
        raise ValueError("threshold_from_normal needs at least one normal score")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: the model produced no usable score there")
    n = s.size
    # The small allowance keeps (n + 1) * quantile from rounding up past a whole number.
    k = min(n, max(1, math.ceil((n + 1) * quantile - 1e-9)))
    return float(np.partition(s, k - 1)[k - 1])
