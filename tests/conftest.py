"""Shared test set-up: a private cache folder and one CPU thread (fast and repeatable)."""

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
