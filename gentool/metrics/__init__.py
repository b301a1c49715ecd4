"""Metrics any family may report: per-image fidelity, FID and KID, anomaly detection."""

from gentool.metrics.anomaly import anomaly_metrics
from gentool.metrics.fid import FID_NETWORK, FeatureDistance, InceptionFeatures, fid_kid_metrics
from gentool.metrics.image import l1_error, psnr, ssim
from gentool.metrics.localization import (
    aupro,
    f1_max,
    pixel_auroc,
    pro_curve,
    threshold_from_normal,
)

__all__ = [
    "FID_NETWORK",
    "FeatureDistance",
    "InceptionFeatures",
    "anomaly_metrics",
    "aupro",
    "f1_max",
    "fid_kid_metrics",
    "l1_error",
    "pixel_auroc",
    "pro_curve",
    "psnr",
    "ssim",
    "threshold_from_normal",
]
