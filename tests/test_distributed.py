"""Data parallelism: ranks stay in step, and N ranks equal one process on N times the batch."""

import os
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from gentool.distributed import Distributed


class TwoOptimizers:
    """A stand-in family: two networks with their own optimizers, as a GAN has."""

    def __init__(self):
        torch.manual_seed(1)
        self.networks = torch.nn.ModuleDict(
            {"g": torch.nn.Linear(4, 3), "d": torch.nn.Linear(3, 1)}
        )
        self.optimizers = {
            "g": torch.optim.Adam(self.networks["g"].parameters(), lr=0.1),
            "d": torch.optim.SGD(self.networks["d"].parameters(), lr=0.1),
        }

    def step(self, x):
        for name in ("g", "d"):
            self.optimizers[name].zero_grad()
            loss = self.networks["d"](torch.tanh(self.networks["g"](x))).pow(2).mean()
            loss.backward()
            self.optimizers[name].step()


def _data():
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(0))


def _worker(rank, world, folder):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["TEST_PORT"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        if rank == 1:
            torch.manual_seed(99)  # a rank that starts elsewhere is brought to rank 0's weights
        model = TwoOptimizers()
        if rank == 1:
            with torch.no_grad():
                for p in model.networks.parameters():
                    p.add_(1.0)
        Distributed(rank, world).prepare(model)
        shard = _data()[rank::world]
        for _ in range(3):
            model.step(shard)
        save_file(model.networks.state_dict(), os.path.join(folder, f"rank{rank}.safetensors"))
        Distributed(rank, world).close()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_ranks_equal_one_process_on_the_whole_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PORT", _free_port())
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    rank0 = load_file(tmp_path / "rank0.safetensors")
    rank1 = load_file(tmp_path / "rank1.safetensors")
    single = TwoOptimizers()
    # Shards of equal size: the mean of the ranks' gradients is the whole batch's gradient.
    x = _data()
    x = torch.cat([x[0::2], x[1::2]])
    for _ in range(3):
        single.step(x)
    for key, value in single.networks.state_dict().items():
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)


def test_torchrun_trains_with_rank_zero_io(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        _free_port(),
        "-m",
        "gentool",
        "train",
        "maf",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--hidden-features",
        "16",
        "--num-layers",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count('"stopped": "finished"') == 1  # rank 0 alone reports
    lines = (out / "metrics.jsonl").read_text().splitlines()
    epochs = [line for line in lines if '"type": "epoch"' in line]
    assert len(epochs) == 2 and '"step": 6,' in epochs[0]  # 1,293 images / 2 ranks / 100 a step
