"""Scoring a data set with a trained model: per-image scores, summaries, anomaly metrics.

For density families the anomaly score is the negative log-likelihood (a flow has no
reconstruction). Where labels exist (a normal class, or MVTec's ``good`` folder), detection
is judged by AUROC and AUPRC (:func:`gentool.metrics.anomaly_metrics`).
"""

from __future__ import annotations

import csv as csv_module
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gentool.errors import UserError, partial_file, writing
from gentool.metrics import anomaly_metrics
from gentool.model import Model
from gentool.progress import stderr_console
from gentool.runtime import to_device

__all__ = ["ScoreResult", "score_source", "write_results"]


@dataclass
class ScoreResult:
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


def _items(batch: Any) -> int:
    if isinstance(batch, dict):
        return len(batch["A"])
    return len(batch[0]) if isinstance(batch, list | tuple) else len(batch)


def score_source(
    model: Model,
    dataset: Any,
    source: Any,
    batch_size: int,
    device: torch.device,
    maps_out: Path | None = None,
) -> ScoreResult:
    """Run ``model.score_batch`` over ``dataset``; summarise, with anomaly metrics if
    labelled, pixel metrics if the model maps anomalies and the data has masks, and with
    ``maps_out`` a heat-map grid per image there."""
    from rich.progress import Progress

    from gentool.localizing import MapCollector, map_names, threshold_metrics

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    columns: dict[str, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    item_paths: dict[str, list[str]] = {}  # translation items name their files
    maps = MapCollector(keep_images=maps_out is not None)
    model.eval()
    model.begin_scoring()
    console = stderr_console()
    # Off where stderr is no terminal (a log file): there a transient bar leaves a blank line.
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("scoring", total=len(dataset))
        for batch in loader:
            if isinstance(batch, list | tuple) and len(batch) >= 2:
                labels.append(batch[1].cpu())
            if isinstance(batch, dict):
                for key in ("A_path", "B_path"):
                    item_paths.setdefault(key, []).extend(batch.get(key, []))
            with torch.no_grad():
                scores = model.score_batch(to_device(batch, device))
            if "anomaly_map" in scores:
                masks = batch[2] if isinstance(batch, list | tuple) and len(batch) == 3 else None
                maps.add(scores.pop("anomaly_map"), _images(batch), masks)
            for key, value in scores.items():
                columns.setdefault(key, []).append(value.detach().double().cpu())
            bar.advance(task, _items(batch))
    per_item = {k: torch.cat(v) for k, v in columns.items()}
    summary: dict[str, Any] = {"images": len(dataset)}
    for key, values in per_item.items():
        summary[f"mean_{key}"] = float(values.mean())
        # The median too: one image far outside the training data can dominate a mean NLL.
        summary[f"median_{key}"] = float(values.median())
    summary.update(model.finish_scoring())
    rows = _rows(dataset, per_item, item_paths)
    # Both optional: a duck-typed scorer needs only eval, the scoring calls and score_batch.
    named = getattr(model, "anomaly_score", None)
    key = named or ("nll" if "nll" in per_item else next(iter(per_item), None))
    threshold = model.anomaly_threshold() if hasattr(model, "anomaly_threshold") else None
    if threshold is not None and key in per_item:
        summary["threshold"] = threshold
        for row, value in zip(rows, per_item[key].tolist(), strict=True):
            row["predicted_anomaly"] = int(value > threshold)
    if labels:
        all_labels = torch.cat(labels)
        anomaly = source.anomaly_labels(all_labels) if source is not None else None
        names = getattr(source.info, "class_names", ()) if source is not None else ()
        if bool((all_labels >= 0).any()):
            for row, label in zip(rows, all_labels.tolist(), strict=True):
                row["label"] = _class_label(label, names)
        if anomaly is not None:
            summary["normal_class"] = source.info.normal_class
            summary["anomaly_score"] = key
            summary.update(anomaly_metrics(per_item[key], anomaly))
            summary.update(threshold_metrics(per_item[key], anomaly, threshold))
            for row, flag in zip(rows, anomaly.tolist(), strict=True):
                row["anomaly"] = int(flag)
    summary.update(maps.metrics())
    if maps_out is not None and maps:
        summary["maps"] = maps.write_grids(maps_out, map_names(dataset, len(rows)))
    return ScoreResult(summary, rows)


def _images(batch: Any) -> torch.Tensor:
    return batch["A"] if isinstance(batch, dict) else batch[0]


def _class_label(label: int, class_names: tuple[str, ...] | list[str]) -> str:
    """The CSV's ``label``: the class name as the folder or data set names it.

    A folder ``0/`` is the class ``"0"`` and ``good/`` the class ``"good"``; "" when the item
    has no class (label -1). Only a source that names no classes at all gives its class
    number, as text, since that is the one name it has.
    """
    if label < 0:
        return ""
    if not class_names:
        return str(label)
    return class_names[label] if label < len(class_names) else ""


def _rows(
    dataset: Any, per_item: dict[str, torch.Tensor], item_paths: dict[str, list[str]]
) -> list[dict[str, Any]]:
    n = len(next(iter(per_item.values()))) if per_item else 0
    paths = getattr(dataset, "paths", None)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"index": i}
        if paths is not None:
            row["path"] = str(paths[i])
        for key, names in item_paths.items():
            if len(names) == n:
                row[key] = str(names[i])
        row.update({k: float(v[i]) for k, v in per_item.items()})
        rows.append(row)
    return rows


def write_results(result: ScoreResult, as_json: bool, csv: Path | None) -> None:
    """Summary to stdout (a table, or JSON); per-image rows to ``csv`` if asked."""
    if csv is not None:
        keys: list[str] = []
        for row in result.rows:
            keys += [k for k in row if k not in keys]
        with writing("--csv", csv):
            csv.parent.mkdir(parents=True, exist_ok=True)
            with (
                partial_file(csv) as partial,  # a full disk leaves no empty or cut CSV
                open(partial, "w", newline="", encoding="utf-8") as handle,
            ):
                writer = csv_module.DictWriter(handle, fieldnames=keys)
                writer.writeheader()
                writer.writerows(result.rows)
    if as_json:
        print(json.dumps(_finite_json(result.summary), indent=2, default=_json_default))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="scores", show_header=False)
    for key, value in result.summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    Console().print(table)
    if csv is not None:
        stderr_console().print(f"per-image scores: {csv}")


def _finite_json(value: Any) -> Any:
    """``value`` with every non-finite float as the string ``"inf"``, ``"-inf"`` or ``"nan"``.

    ``json.dumps`` would write them as ``Infinity`` and ``NaN``, which are not JSON: strict
    readers (``jq``, JavaScript's ``JSON.parse``) refuse the whole document. An IAF reports
    an NLL beyond float range as infinite, so a mean can be.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _finite_json(value.tolist())
    return str(value)
