"""Shared test set-up for tests/ and each plugin's tests/: a private cache folder, one CPU thread,
GPU tests only with a GPU."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    # Tests never read or write a user's dataset cache.
    monkeypatch.setenv("GENTOOL_HOME", str(tmp_path_factory.mktemp("gentool-home")))
    # Nor a user's torch hub cache (pretrained Inception weights for FID).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # `-m cuda` on a machine without a GPU skips the GPU tests instead of failing them.
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
