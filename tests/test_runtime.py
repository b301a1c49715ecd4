"""The runtime's CUDA-only paths, checked on the CPU: process-wide switches put back after a
run, the RNG state of the training GPU alone, devices gentool cannot run on."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch

from gentool.cli import main
from gentool.errors import UserError
from gentool.runtime import (
    backend_settings,
    precision_context,
    resolve_device,
    rng_state,
    set_rng_state,
)

CUDA1 = torch.device("cuda", 1)


def _switches() -> tuple:
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )


@pytest.fixture
def current_gpu(monkeypatch):
    """torch.cuda.device recorded instead of entered (there is no GPU here)."""
    entered = []

    @contextmanager
    def device(which):
        entered.append(which)
        yield

    monkeypatch.setattr(torch.cuda, "device", device)
    return entered


def test_a_training_step_leaves_the_tf32_switches_alone():
    before = _switches()
    with precision_context("tf32", CUDA1):
        assert _switches() == before  # the run sets them once (backend_settings)
    assert _switches() == before


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_a_cuda_run_sets_its_switches_and_puts_them_back(precision, current_gpu, monkeypatch):
    monkeypatch.delenv("GENTOOL_DETERMINISTIC", raising=False)
    before = _switches()
    with pytest.raises(KeyboardInterrupt), backend_settings(precision, CUDA1):
        assert torch.backends.cuda.matmul.allow_tf32 == (precision == "tf32")
        assert torch.backends.cudnn.allow_tf32 == (precision == "tf32")
        assert torch.backends.cudnn.benchmark
        raise KeyboardInterrupt  # however the run ends
    assert _switches() == before
    assert current_gpu == [CUDA1]  # pinned batches and captures go to the run's GPU


def test_deterministic_cuda_runs_get_the_cublas_setting(current_gpu, monkeypatch):
    monkeypatch.setenv("GENTOOL_DETERMINISTIC", "1")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _switches()
    with backend_settings("fp32", CUDA1):
        # Without it the first cuBLAS matmul raises; reflection padding's backward has no
        # deterministic CUDA kernel, so it warns instead of stopping a CycleGAN run.
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.benchmark
    assert _switches() == before


@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("yes", True), ("0", False), ("off", False), ("false", False), ("", False)],
)
def test_gentool_deterministic_reads_like_the_other_switches(value, on, monkeypatch):
    monkeypatch.setenv("GENTOOL_DETERMINISTIC", value)
    before = _switches()
    with backend_settings("fp32", torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled() == on
    assert _switches() == before


def test_a_deterministic_run_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GENTOOL_DETERMINISTIC", "1")
    args = ["train", "made", "--data", "digits", "--max-steps", "1", "--hidden-features", "8"]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert not torch.are_deterministic_algorithms_enabled()


class FakeGenerators:
    """torch.cuda's RNG calls recorded; reading every GPU's state is refused."""

    def __init__(self, monkeypatch) -> None:
        self.read, self.written = [], []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", self.refuse)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.refuse)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)

    @staticmethod
    def refuse(*args):
        raise AssertionError("a CUDA context on every GPU")

    def get(self, device="cuda"):
        self.read.append(torch.device(device))
        return torch.tensor([torch.device(device).index or 0], dtype=torch.uint8)

    def set(self, state, device="cuda"):
        self.written.append((int(state[0]), torch.device(device)))


def test_the_resume_state_holds_the_training_gpus_generator_only(monkeypatch):
    cuda = FakeGenerators(monkeypatch)
    assert "cuda" not in rng_state(torch.device("cpu"))  # a CPU run touches no GPU
    state = rng_state(CUDA1)
    assert cuda.read == [CUDA1]
    set_rng_state(state, CUDA1)
    assert cuda.written == [(1, CUDA1)]
    set_rng_state(state, torch.device("cpu"))  # a CUDA run resumed on the CPU
    assert cuda.written == [(1, CUDA1)]


def test_an_older_resume_state_with_every_gpus_generator_still_resumes(monkeypatch):
    cuda = FakeGenerators(monkeypatch)
    state = rng_state(torch.device("cpu"))
    state["cuda"] = [torch.tensor([index], dtype=torch.uint8) for index in range(2)]
    set_rng_state(state, CUDA1)
    set_rng_state(state, torch.device("cuda"))  # the current GPU, 0
    set_rng_state(state, torch.device("cuda", 3))  # saved with fewer GPUs: left as it is
    assert cuda.written == [(1, CUDA1), (0, torch.device("cuda"))]


@pytest.mark.parametrize("text", ["meta", "xla", "privateuseone"])
def test_devices_gentool_does_not_run_on_are_one_line_errors(text):
    with pytest.raises(UserError, match="is not a device"):
        resolve_device(text)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_a_cuda_run_resumes_and_leaves_the_switches_as_they_were(tmp_path, precision):
    before = _switches()
    args = ["train", "maf", "--data", "digits", "--hidden-features", "8", "--num-layers", "2"]
    args += ["--device", "cuda", "--precision", precision, "--out", str(tmp_path), "--quiet"]
    assert main([*args, "--max-steps", "3"]) == 0
    assert main([*args, "--max-steps", "6", "--resume"]) == 0
    assert _switches() == before
