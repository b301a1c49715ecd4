"""The data order of a run: a seeded permutation per epoch, the validation split, loaders.

The order of epoch ``e`` is drawn from a generator seeded by ``(seed, e)`` and the
DataLoader's worker seeds from a generator of its own, so neither touches the global RNG
that the model draws from: a run resumed part-way through an epoch sees the same batches
and the same noise as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, default_collate

from gentool.config import Schedule
from gentool.data.base import DataSource
from gentool.errors import UserError
from gentool.progress import note
from gentool.runtime import to_device
from gentool.training.signals import ignore_stop_signals

__all__ = ["EpochSampler", "Loaders", "make_loaders", "preview_batch", "split_validation"]


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from ``(seed, epoch)``, optionally starting part-way.

    With several processes, each takes every ``world``-th index of the same permutation,
    all with the same count, so every rank runs the same number of steps.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g)
        shard = order[: self.size - self.size % self.world][self.rank :: self.world]
        return iter(shard[self.start :].tolist())

    def __len__(self) -> int:
        return self.size // self.world - self.start


def split_validation(
    dataset: Dataset, fraction: float, seed: int
) -> tuple[Dataset, Dataset | None]:
    """A fixed, seeded hold-out of ``fraction`` of the training set for early stopping."""
    n = len(dataset)
    n_val = int(round(n * fraction))
    if fraction <= 0 or n_val == 0:
        return dataset, None
    if n_val >= n:
        raise UserError(f"--val-fraction {fraction} leaves no training images out of {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return Subset(dataset, order[n_val:]), Subset(dataset, order[:n_val])


@dataclass
class Loaders:
    train: DataLoader
    validation: DataLoader | None
    sampler: EpochSampler  # set per epoch: where the epoch starts, for a resumed run


def make_loaders(
    source: DataSource,
    schedule: Schedule,
    validates: bool,
    device: torch.device,
    workers: int,
    rank: int = 0,
    world: int = 1,
) -> Loaders:
    """The training loader (and the validation loader when the family ``validates``)."""
    fraction = schedule.val_fraction if validates else 0.0
    train, val = split_validation(source.split("train"), fraction, schedule.seed)
    if len(train) == 0:
        raise UserError("the training split is empty (check --data and --normal-class)")
    if fraction > 0 and val is None and rank == 0:  # too few images to hold one out
        note(
            f"note: --val-fraction {fraction:g} of {len(train)} training images holds out none: "
            "no validation loss, no early stopping, and model.safetensors keeps the latest "
            "weights"
        )
    batch = schedule.batch_size
    sampler = EpochSampler(len(train), schedule.seed, rank, world)
    common = {
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        # Each DataLoader iterator draws a worker seed; from its own generator, that draw
        # leaves the global RNG alone, so a run resumed mid-epoch sees the same numbers.
        "generator": torch.Generator().manual_seed(schedule.seed),
        "worker_init_fn": ignore_stop_signals if workers else None,
    }
    # A last batch of one image breaks batch norm; drop the ragged end when there is more.
    drop_last = len(sampler) > batch
    train_loader = DataLoader(
        train, batch_size=batch, sampler=sampler, drop_last=drop_last, **common
    )
    val_loader = DataLoader(val, batch_size=max(batch, 256), **common) if val else None
    return Loaders(train_loader, val_loader, sampler)


def preview_batch(source: DataSource, device: torch.device) -> Any:
    """A fixed batch of up to four held-out items (training items when the test split is
    missing or empty: a folder of one image) for the preview grids, on ``device``; None
    when there is nothing."""
    try:
        split = source.split("test")
    except UserError:
        split = None
    if split is None or len(split) == 0:
        split = source.split("train")
    items = [split[i] for i in range(min(4, len(split)))]
    if not items:
        return None
    return to_device(default_collate(items), device)
