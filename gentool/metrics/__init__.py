"""Metrics any family may report: per-image fidelity, FID and KID, anomaly detection."""

from gentool.metrics.anomaly import anomaly_metrics
from gentool.metrics.fid import FID_NETWORK, FeatureDistance, InceptionFeatures, fid_kid_metrics
from gentool.metrics.image import l1_error, psnr, ssim

__all__ = [
    "FID_NETWORK",
    "FeatureDistance",
    "InceptionFeatures",
    "anomaly_metrics",
    "fid_kid_metrics",
    "l1_error",
    "psnr",
    "ssim",
]
