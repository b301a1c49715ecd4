"""Smoothing and the ``auto`` hyperparameters of density models (``gentool.density``).

The numbers in the behavioural test were measured with torch 2.14.1 on CPU, one thread,
and the seeds below.
"""

import json

import pytest
import torch

from gentool import cli
from gentool.checkpoint import read_checkpoint
from gentool.data.base import DataInfo, DataOptions
from gentool.data.digits import load
from gentool.density import resolve_auto, smooth
from gentool.errors import UserError
from gentool.family import DataKind
from gentool_flows.config import IAFConfig, MADEConfig, MAFConfig
from gentool_flows.models import MAFModel

DIGITS = DataInfo(DataKind.IMAGES, 1, 8, 8, levels=17, source="digits")
ONE_CLASS = DataInfo(DataKind.IMAGES, 1, 8, 8, levels=17, source="digits", normal_class="3")


def test_smoothing_stays_in_the_unit_cube_and_has_the_asked_spread():
    torch.manual_seed(0)
    y = torch.tensor([0.001, 0.5, 0.999]).expand(20000, 3)
    z = smooth(y, 0.1)
    assert ((z >= 0) & (z <= 1)).all()
    assert abs(z[:, 1].mean().item() - 0.5) < 0.005 and abs(z[:, 1].std().item() - 0.1) < 0.005
    # Reflected at the edges: near 0 the values fold back, about |N(0, 0.1)| in distribution
    # (mean 0.1 sqrt(2 / pi)), and the same below 1.
    folded_mean = 0.1 * (2 / torch.pi) ** 0.5
    assert abs(z[:, 0].mean().item() - folded_mean) < 0.005
    assert abs(1 - z[:, 2].mean().item() - folded_mean) < 0.005
    # Large noise folds many times and still lands in [0, 1].
    assert ((smooth(y, 5.0) >= 0) & (smooth(y, 5.0) <= 1)).all()


def test_no_smoothing_is_the_identity_and_draws_no_noise():
    y = torch.rand(4, 3)
    state = torch.get_rng_state()
    assert smooth(y, 0.0) is y
    assert torch.equal(torch.get_rng_state(), state)  # density runs keep their RNG stream


@pytest.mark.parametrize("config_class", [MADEConfig, MAFConfig, IAFConfig])
def test_auto_values_depend_on_one_class_training(config_class):
    one_class = resolve_auto(config_class(), ONE_CLASS)
    assert (one_class.logit_lambda, one_class.smoothing) == (0.05, 0.1)
    density = resolve_auto(config_class(), DIGITS)
    assert (density.logit_lambda, density.smoothing) == (1e-6, 0.0)
    chosen = resolve_auto(config_class(logit_lambda=0.2, smoothing=0.0), ONE_CLASS)
    assert (chosen.logit_lambda, chosen.smoothing) == (0.2, 0.0)


def test_a_negative_value_other_than_auto_is_one_clear_error():
    with pytest.raises(UserError, match="--smoothing must be -1 \\(auto\\) or at least 0"):
        resolve_auto(MAFConfig(smoothing=-0.5), DIGITS)


def test_the_model_uses_and_saves_the_resolved_values(tmp_path, capsys):
    model = MAFModel(MAFConfig(hidden_features=(8,), num_layers=1), ONE_CLASS, "cpu")
    assert model.config.logit_lambda == 0.05 and model.logit.lam == 0.05
    assert model.config.smoothing == 0.1

    run = tmp_path / "maf3"
    args = "train maf --data digits --normal-class 3 --hidden-features 8 --num-layers 1"
    code = cli.main([*args.split(), "--max-steps", "2", "--out", str(run), "--quiet"])
    assert code == 0
    capsys.readouterr()
    meta, _ = read_checkpoint(run / "model.safetensors")
    assert (meta.config["logit_lambda"], meta.config["smoothing"]) == (0.05, 0.1)
    code = cli.main(["score", "maf", "--checkpoint", str(run), "--data", "digits", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["normal_class"] == "3" and "auroc" in summary


def _train_and_gap(smoothing: float) -> float:
    """Held-out minus training NLL (nats) of a small MAF trained 500 steps on the 3s."""
    source = load(DataOptions(normal_class="3"))
    train, test = source.split("train"), source.split("test")
    x = torch.stack([train[i][0] for i in range(len(train))])
    held_out = torch.stack([test[i][0] for i in range(len(test)) if test.labels[i] == 3])
    torch.manual_seed(0)
    config = MAFConfig(hidden_features=(64,), num_layers=2, smoothing=smoothing)
    model = MAFModel(config, source.info, "cpu")
    model.configure_training()
    model.train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(500):
        model.train_step((x[torch.randint(len(x), (64,), generator=generator)], None))
    model.eval()
    torch.manual_seed(1)
    train_nll, test_nll = (model.score_batch((z, None))["nll"].mean() for z in (x, held_out))
    return (test_nll - train_nll).item()


def test_smoothing_closes_the_generalisation_gap_on_one_class_digits():
    # Measured: 5.4 nats with smoothing 0.1 (the one-class default), 31.9 without.
    assert _train_and_gap(0.1) < 15.0
    assert _train_and_gap(0.0) > 25.0
