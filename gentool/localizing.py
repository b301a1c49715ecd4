"""Anomaly maps when scoring: pixel metrics, the stored threshold, and the grids ``--maps`` writes.

A family that localises anomalies returns ``"anomaly_map"`` from ``score_batch``: one
value per pixel, higher = more anomalous, at the size of the images it was given. With
ground-truth masks (MVTec AD's ``ground_truth/``, the built-in defect set) the maps are
judged by pixel AUROC and AUPRO (per-region overlap up to a false-positive rate of 0.3;
Bergmann et al., IJCV 2021). ``--maps DIR`` writes, per image, the image, its heat map
over the image, and the mask when there is one, side by side in one PNG.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from gentool.errors import writing

__all__ = ["MapCollector", "heat_colours", "map_metrics", "threshold_metrics"]

#: Colour range of the heat maps: these quantiles of all the maps' values, so one hot pixel
#: does not wash out the rest, and every image of a run shares one scale.
HEAT_RANGE = (0.01, 0.999)


def map_metrics(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Pixel AUROC and AUPRO of ``maps`` [N, H, W] against 0/1 ``masks`` [N, H, W]; empty
    when the masks hold no defect pixel or no normal one (the metrics are undefined)."""
    from gentool.metrics import aupro, pixel_auroc

    if not 0 < int(masks.sum()) < masks.numel():
        return {}
    return {"pixel_auroc": pixel_auroc(maps, masks), "aupro": aupro(maps, masks)}


def threshold_metrics(
    scores: torch.Tensor, anomaly: torch.Tensor, threshold: float | None
) -> dict[str, float]:
    """F1-max (an oracle: its threshold is chosen on these labels) and, at the model's own
    threshold (chosen without test labels), precision, recall and F1."""
    from gentool.metrics import f1_max

    labels = anomaly.long()
    if not 0 < int(labels.sum()) < len(labels):
        return {}
    best, best_threshold = f1_max(scores, labels)
    out = {"f1_max": best, "f1_max_threshold": best_threshold}
    if threshold is not None:
        predicted = scores > threshold
        true_positive = int((predicted & (labels == 1)).sum())
        precision = true_positive / max(int(predicted.sum()), 1)
        recall = true_positive / int(labels.sum())
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update({"precision": precision, "recall": recall, "f1": f1})
    return out


def heat_colours(maps: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``maps`` [N, H, W] as RGB [N, 3, H, W] in [0, 1] (matplotlib's ``jet``), ``low``
    blue and ``high`` red."""
    from matplotlib import colormaps

    scaled = ((maps - low) / max(high - low, 1e-12)).clamp(0, 1)
    rgba = colormaps["jet"](scaled.numpy())  # [N, H, W, 4]
    return torch.from_numpy(rgba[..., :3]).permute(0, 3, 1, 2).float()


class MapCollector:
    """The maps (and masks, and with ``--maps`` the images) of a scoring run, batch by batch.

    Maps are kept on the host in float32: for MVTec AD's largest test split at 256 px that
    is about 130 MB, the price of exact pixel metrics over the whole split.
    """

    def __init__(self, keep_images: bool) -> None:
        self.keep_images = keep_images
        self.maps: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.images: list[torch.Tensor] = []

    def add(self, maps: torch.Tensor, images: torch.Tensor, masks: torch.Tensor | None) -> None:
        self.maps.append(maps.detach().float().cpu())
        if masks is not None:
            self.masks.append(masks.detach().float().cpu().reshape(maps.shape))
        if self.keep_images:  # 8 bits a channel: a quarter of the memory of floats
            self.images.append(images.detach().cpu().clamp(0, 1).mul(255).round().byte())

    def __bool__(self) -> bool:
        return bool(self.maps)

    def metrics(self) -> dict[str, float]:
        if not self.maps or len(self.masks) != len(self.maps):
            return {}
        return map_metrics(torch.cat(self.maps), torch.cat(self.masks))

    def write_grids(self, folder: Path, names: list[str]) -> int:
        """One PNG per image in ``folder``: image | heat map over it | mask (when known)."""
        from gentool.data.images import save_image

        maps = torch.cat(self.maps)
        values = maps.flatten()
        sample = values[torch.randperm(len(values), generator=torch.Generator().manual_seed(0))]
        low, high = (float(q) for q in torch.quantile(sample[: 1 << 24], torch.tensor(HEAT_RANGE)))
        images = torch.cat(self.images).float() / 255
        masks = torch.cat(self.masks) if len(self.masks) == len(self.maps) else None
        with writing("--maps", folder):
            folder.mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                image = images[i].expand(3, *images.shape[-2:])
                heat = heat_colours(maps[i : i + 1], low, high)[0]
                panels = [image, 0.5 * image + 0.5 * heat]
                if masks is not None:
                    panels.append(masks[i].expand(3, *masks.shape[-2:]))
                save_image(torch.stack(panels), folder / f"{name}.png", nrow=len(panels))
        return len(names)


def map_names(dataset: Any, count: int) -> list[str]:
    """File names for the grids: the image files' own (class folder first, so MVTec's
    ``crack/000`` and ``good/000`` differ), else their index."""
    paths = getattr(dataset, "paths", None)
    if paths is None or len(paths) != count:
        return [f"{i:05d}" for i in range(count)]
    names = []
    for path in paths:
        path = Path(path)
        names.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{path.parent.name}_{path.stem}"))
    return names
