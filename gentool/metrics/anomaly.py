"""Anomaly-detection metrics of per-item scores against 0/1 labels: AUROC and AUPRC.

Detection is judged by AUROC and AUPRC (scikit-learn), never accuracy: anomalies are usually
rare, or, in one-class benchmarks such as digits, the great majority. AUPRC is reported both
with the anomaly as the positive class and with the normal class as positive.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["anomaly_metrics"]


def anomaly_metrics(scores: torch.Tensor, anomaly: torch.Tensor) -> dict[str, Any]:
    """AUROC and AUPRC of ``scores`` (higher = more anomalous) against 0/1 labels.

    Example:
        >>> anomaly_metrics(torch.tensor([0.1, 0.9, 0.2, 0.8]), torch.tensor([0, 1, 0, 1]))
        {'normal': 2, 'anomalous': 2, 'auroc': 1.0, 'auprc': 1.0, 'auprc_normal': 1.0}
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = anomaly.cpu().numpy()  # scikit-learn reads host memory: a CUDA tensor moves first
    scores = scores.detach().double().cpu()
    finite = scores[torch.isfinite(scores)]
    if len(finite) < len(scores):
        # Only the order matters to these metrics, and scikit-learn refuses infinities (an
        # NLL beyond float range): they become the extremes of the finite scores, or tie
        # when no score is finite.
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
        scores = scores.clamp(low - 1, high + 1)
    s = scores.numpy()
    n_anomalous = int(y.sum())
    out: dict[str, Any] = {"normal": int(len(y) - n_anomalous), "anomalous": n_anomalous}
    if 0 < n_anomalous < len(y):
        out["auroc"] = float(roc_auc_score(y, s))
        out["auprc"] = float(average_precision_score(y, s))
        out["auprc_normal"] = float(average_precision_score(1 - y, -s))
    return out
