"""The family as gentool sees it: config, model, training step, sampling, scoring."""

import dataclasses

import pytest
import torch
from gentool.api import DataInfo, DataKind, DensityModel

from gentool_realnvp.config import RealNVPConfig
from gentool_realnvp.model import RealNVPModel

DIGITS = DataInfo(DataKind.IMAGES, channels=1, height=8, width=8, levels=17, source="digits")


def _model(**overrides) -> RealNVPModel:
    config = dataclasses.replace(RealNVPConfig(), hidden_features=(32,), layers=4, **overrides)
    torch.manual_seed(0)
    return RealNVPModel(config, DIGITS, torch.device("cpu"))


def _digit_like(n: int) -> torch.Tensor:
    return torch.randint(0, 17, (n, 1, 8, 8)).float() / 16


@pytest.mark.parametrize("coupling", ["affine", "additive"])
@pytest.mark.parametrize("mask", ["checkerboard", "halves"])
def test_training_lowers_the_loss(coupling, mask):
    model = _model(coupling=coupling, mask=mask, lr=1e-2)
    assert isinstance(model, DensityModel)
    model.configure_training()
    batch = (_digit_like(64), torch.zeros(64, dtype=torch.long))
    first = model.train_step(batch)["loss"]
    for _ in range(20):
        last = model.train_step(batch)["loss"]
    assert torch.isfinite(first) and last < first


def test_sample_and_score():
    model = _model().eval()
    images = model.sample(5, temperature=0.8)
    assert images.shape == (5, 1, 8, 8)
    assert images.min() >= 0 and images.max() <= 1
    scores = model.score_batch((_digit_like(7), torch.zeros(7, dtype=torch.long)))
    assert set(scores) == {"nll", "bits_per_dim"}
    assert scores["nll"].shape == (7,) and torch.isfinite(scores["nll"]).all()


def test_weights_round_trip_through_a_state_dict():
    model, other = _model(), _model(seed=1)
    for parameter in model.networks.parameters():
        parameter.data.normal_(0.0, 0.1)
    other.networks.load_state_dict(model.networks.state_dict())
    w = torch.randn(4, 64)
    torch.testing.assert_close(model.flow.log_prob(w), other.flow.log_prob(w))
