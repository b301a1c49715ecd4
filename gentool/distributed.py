"""Data-parallel training across processes (torchrun), the plain way.

``torchrun --nproc_per_node N -m gentool train ...`` starts N processes; each reads
RANK / LOCAL_RANK / WORLD_SIZE, takes its own GPU (or the CPU with the gloo backend), trains
on its shard of every epoch's permutation, and averages gradients before every optimizer
step. Rank 0 alone logs, plots and writes checkpoints.

Gradients are averaged in an optimizer step pre-hook rather than by wrapping networks in
``DistributedDataParallel``: a family's step may call any method of its networks (a flow
calls ``log_prob``, not ``forward``) and may run several optimizers in turn (a GAN), and the
hook keeps both working without the family knowing it runs distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from gentool.errors import UserError

__all__ = ["Distributed", "setup"]


@dataclass
class Distributed:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The average of ``values`` over all processes (what the logs show)."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self._device)
        dist.all_reduce(tensor)
        return {k: float(v) / self.world for k, v in zip(keys, tensor.tolist(), strict=True)}

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a Ctrl-C seen by one rank)."""
        if not self.active:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self._device)
        dist.all_reduce(tensor)
        return bool(tensor.item() > 0)

    def prepare(self, model: Any) -> None:
        """Start every rank from rank 0's weights and average gradients before each step."""
        if not self.active:
            return
        for tensor in model.networks.state_dict().values():
            dist.broadcast(tensor, src=0)
        for optimizer in model.optimizers.values():
            optimizer.register_step_pre_hook(self._average_gradients)

    def _average_gradients(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        grads = [g for g in grads if g is not None]
        if not grads:
            return
        # One flat buffer: one collective per optimizer step instead of one per tensor.
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def barrier(self) -> None:
        if self.active:
            if dist.get_backend() == "nccl":
                # NCCL's barrier is an all-reduce on a GPU; named, it is this rank's own,
                # not one guessed from the rank before any collective ran (a hang when
                # the guess is wrong, and a warning each run).
                dist.barrier(device_ids=[self._device.index])
            else:
                dist.barrier()

    def close(self) -> None:
        """Leave the process group together once the work is done (a rank that tears its
        connections down while a peer still uses them can abort that peer)."""
        if self.active and dist.is_initialized():
            self.barrier()
            dist.destroy_process_group()

    @property
    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def setup(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes (if any); returns this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise UserError(
                f"torchrun: local rank {local_rank} needs a GPU of its own but there are only "
                f"{count}; start at most {count} processes per node (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Distributed(rank, world, local_rank), device
