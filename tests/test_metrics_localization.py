"""Localization metrics against independent brute-force versions on tiny cases: pixel AUROC
by pairwise counts and scikit-learn, AUPRO by a loop over every threshold with its own flood
fill, F1-max by hand and by scikit-learn, and the label-free threshold's conformal bound."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_curve, roc_auc_score

from gentool.metrics import aupro, f1_max, pixel_auroc, pro_curve, threshold_from_normal


def tiny_masks() -> np.ndarray:
    """3 images of 8x8: two regions in the first (one joined only through a corner), one in
    the second, none in the third."""
    masks = np.zeros((3, 8, 8), dtype=np.int64)
    masks[0, 1:3, 1:3] = 1
    masks[0, 3, 3] = 1  # touches (2, 2) diagonally: the same region under 8-connectivity
    masks[0, 5:7, 4:8] = 1
    masks[1, 2:6, 3] = 1
    return masks


def tiny_maps(seed: int, decimals: int | None) -> np.ndarray:
    """Scores a little higher on the defects, rounded to force ties when ``decimals``."""
    rng = np.random.default_rng(seed)
    maps = rng.random((3, 8, 8)) + 0.5 * tiny_masks()
    return maps if decimals is None else maps.round(decimals)


def regions_by_flood_fill(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of one 2-D mask, each as a boolean mask."""
    seen = np.zeros(mask.shape, dtype=bool)
    regions = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        region, stack = np.zeros(mask.shape, dtype=bool), [start]
        seen[start] = True
        while stack:
            i, j = stack.pop()
            region[i, j] = True
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    inside = 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1]
                    if inside and mask[a, b] and not seen[a, b]:
                        seen[a, b] = True
                        stack.append((a, b))
        regions.append(region)
    return regions


def brute_force_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[list, list]:
    regions = [(i, r) for i, m in enumerate(masks) for r in regions_by_flood_fill(m)]
    normal = masks == 0
    fprs, pros = [0.0], [0.0]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        flagged = maps >= t
        fprs.append((flagged & normal).sum() / normal.sum())
        pros.append(np.mean([(flagged[i] & r).sum() / r.sum() for i, r in regions]))
    return fprs, pros


def brute_force_aupro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    fprs, pros = brute_force_pro_curve(maps, masks)
    area = 0.0
    for x0, y0, x1, y1 in zip(fprs, pros, fprs[1:], pros[1:], strict=False):
        if x0 >= limit:
            break
        if x1 > limit:  # cut the segment that crosses the limit
            y1, x1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0), limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def brute_force_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    positive, negative = scores[labels == 1], scores[labels == 0]
    above = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return (above + 0.5 * ties) / (len(positive) * len(negative))


# -- pixel AUROC ----------------------------------------------------------------------------------
@pytest.mark.parametrize("decimals", [None, 1])
def test_pixel_auroc_is_the_pairwise_count_and_scikit_learns(decimals):
    maps, masks = tiny_maps(0, decimals), tiny_masks()
    expected = brute_force_auroc(maps.ravel(), masks.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(maps, masks) == pytest.approx(
        roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12
    )


def test_pixel_auroc_on_larger_tied_maps_matches_scikit_learn_with_a_channel_axis():
    rng = np.random.default_rng(1)
    masks = (rng.random((6, 1, 32, 32)) < 0.1).astype(np.float32)
    maps = torch.from_numpy((rng.random((6, 32, 32)) + masks[:, 0]).round(2).astype(np.float32))
    expected = roc_auc_score(masks.ravel(), maps.numpy().ravel())
    assert pixel_auroc(maps, torch.from_numpy(masks)) == pytest.approx(expected, abs=1e-12)


def test_pixel_auroc_of_perfect_and_inverted_maps():
    masks = tiny_masks()
    assert pixel_auroc(masks + 0.1 * tiny_maps(2, None), masks) == 1.0
    assert pixel_auroc(1 - masks, masks) == 0.0


def test_pixel_auroc_pulls_infinities_in_and_refuses_what_it_cannot_judge():
    maps, masks = tiny_maps(3, None), tiny_masks()
    with_inf = maps.copy()
    with_inf[0, 1, 1], with_inf[2, 0, 0] = np.inf, -np.inf
    same_order = maps.copy()
    same_order[0, 1, 1], same_order[2, 0, 0] = maps.max() + 1, maps.min() - 1
    assert pixel_auroc(with_inf, masks) == pixel_auroc(same_order, masks)
    with pytest.raises(ValueError, match="both anomalous and normal"):
        pixel_auroc(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="both anomalous and normal"):
        pixel_auroc(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="NaN"):
        pixel_auroc(np.where(masks == 1, np.nan, maps), masks)
    with pytest.raises(ValueError, match="only 0 and 1"):
        pixel_auroc(maps, masks * 255)
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_auroc(maps[:2], masks)


# -- AUPRO ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_aupro_matches_a_loop_over_every_threshold(seed, decimals, limit):
    maps, masks = tiny_maps(seed, decimals), tiny_masks()
    expected = brute_force_aupro(maps, masks, limit)
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(expected, abs=1e-9)


def test_pro_curve_matches_the_brute_force_curve_point_by_point():
    maps, masks = tiny_maps(5, 1), tiny_masks()
    fpr, pro = pro_curve(torch.from_numpy(maps), torch.from_numpy(masks)[:, None])
    expected_fpr, expected_pro = brute_force_pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, expected_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, expected_pro, atol=1e-12)
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0)


def test_aupro_limit_on_a_point_of_the_curve_needs_no_interpolation():
    maps, masks = tiny_maps(6, None), tiny_masks()  # no ties: every false-positive count occurs
    limit = 40 / int((masks == 0).sum())
    assert aupro(maps, masks, limit) == pytest.approx(brute_force_aupro(maps, masks, limit), 1e-9)


def test_regions_join_through_corners():
    masks = np.zeros((1, 5, 5), dtype=np.int64)
    masks[0, 0, 0] = masks[0, 0, 1] = masks[0, 1, 0] = 1
    masks[0, 2, 1] = 1  # diagonal to (1, 0): one region of 4 pixels, not 3 + 1
    maps = np.zeros((1, 5, 5))
    maps[0, 2, 1] = 1.0
    fpr, pro = pro_curve(maps, masks)
    assert (fpr[1], pro[1]) == (0.0, 0.25)


def test_aupro_of_perfect_and_inverted_maps():
    masks = tiny_masks()
    assert aupro(masks + 0.1 * tiny_maps(7, None), masks) == pytest.approx(1.0, abs=1e-12)
    assert aupro(1 - masks, masks) == 0.0
    assert aupro(torch.from_numpy(masks).float(), torch.from_numpy(masks)) == pytest.approx(1.0)


def test_aupro_refuses_what_it_cannot_judge():
    maps, masks = tiny_maps(8, None), tiny_masks()
    with pytest.raises(ValueError, match="both anomalous and normal"):
        aupro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="both anomalous and normal"):
        aupro(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, masks, fpr_limit=0.0)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        aupro(maps.ravel(), masks.ravel())


# -- F1-max ---------------------------------------------------------------------------------------
def test_f1_max_by_hand():
    # Thresholds 0.8, 0.4, 0.35, 0.1 flag 1, 2, 3, 4 items: F1 = 2/3, 1/2, 4/5, 2/3.
    assert f1_max(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == (0.8, 0.35)
    assert f1_max(torch.tensor([0.3, 0.3, 0.9]), torch.tensor([1, 0, 1])) == pytest.approx(
        (0.8, 0.3)
    )


def test_f1_max_matches_scikit_learns_curve_on_pixels():
    maps, masks = tiny_maps(9, 1), tiny_masks()
    precision, recall, thresholds = precision_recall_curve(masks.ravel(), maps.ravel())
    with np.errstate(invalid="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    best, threshold = f1_max(maps, masks[:, None])
    assert best == pytest.approx(f1.max(), abs=1e-12)
    assert threshold in thresholds[f1 == f1.max()]
    with pytest.raises(ValueError, match="at least one anomalous"):
        f1_max(maps, np.zeros_like(masks))


# -- the label-free threshold ---------------------------------------------------------------------
@pytest.mark.parametrize("n", [99, 150, 999])
@pytest.mark.parametrize("quantile", [0.9, 0.95, 0.99])
def test_threshold_from_normal_bounds_false_alarms_on_a_new_normal_item(n, quantile):
    # Leave each of n + 1 exchangeable scores out in turn: the share of them flagged by the
    # threshold of the other n is the false-alarm rate, at most 1 - quantile, and tight.
    scores = np.random.default_rng(n).standard_normal(n + 1)
    flagged = sum(
        scores[i] > threshold_from_normal(np.delete(scores, i), quantile) for i in range(n + 1)
    )
    assert flagged / (n + 1) <= 1 - quantile + 1e-12
    assert flagged / (n + 1) > 1 - quantile - 1 / (n + 1)


def test_threshold_from_normal_is_a_score_and_the_maximum_when_too_few():
    scores = torch.randn(40, generator=torch.Generator().manual_seed(0))
    assert threshold_from_normal(scores) == float(scores.max())  # 40 < 0.99 / 0.01
    assert threshold_from_normal(scores, 1.0) == float(scores.max())
    k = math.ceil(41 * 0.9)
    assert threshold_from_normal(scores, 0.9) == float(scores.sort().values[k - 1])
    maps = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert threshold_from_normal(maps, 0.5) in maps.flatten().tolist()
    with pytest.raises(ValueError, match="quantile"):
        threshold_from_normal(scores, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        threshold_from_normal(torch.tensor([0.1, float("nan")]))
    with pytest.raises(ValueError, match="at least one"):
        threshold_from_normal(torch.tensor([]))
