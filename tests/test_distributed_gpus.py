"""torchrun on GPUs (NCCL), checked on the CPU: each rank's own GPU, or a one-line error."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from gentool.distributed import Distributed, setup
from gentool.errors import UserError


def test_more_ranks_than_gpus_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="local rank 3 needs a GPU of its own but there are only 2"):
        setup(torch.device("cuda"))


def test_an_nccl_barrier_names_this_ranks_gpu(monkeypatch):
    barriers = []
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(dist, "barrier", lambda **kwargs: barriers.append(kwargs))
    Distributed(rank=1, world=2, local_rank=1).barrier()
    assert barriers == [{"device_ids": [1]}]
