"""Hyperparameter dataclasses: parsing, errors, config files, JSON round trip."""

import json
import os
import threading
from dataclasses import dataclass

import pytest

from gentool.config import (
    DensityConfig,
    TrainConfig,
    build_config,
    config_fields,
    config_from_json,
    config_to_dict,
    load_config_file,
    option,
)
from gentool.errors import UserError


@dataclass
class Config(TrainConfig):
    hidden_features: tuple[int, ...] = option((64, 64), "units per hidden layer", minimum=1)
    batch_norm: bool = option(False, "batch norm between layers")
    norm: str = option("instance", "normalisation", choices=("batch", "instance", "none"))
    clamp: float = option(5.0, "log-scale clamp", minimum=0.0)


def test_defaults_and_overrides():
    cfg = build_config(Config, {"hidden-features": "32, 16", "batch_norm": "yes", "lr": "3e-4"})
    assert cfg.hidden_features == (32, 16)
    assert cfg.batch_norm is True
    assert cfg.lr == pytest.approx(3e-4)
    assert cfg.epochs == TrainConfig().epochs


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "ten"}, "--epochs: 'ten' is not a valid int"),
        ({"epochs": "0"}, "--epochs: '0' is below the minimum 1"),
        ({"norm": "layer"}, "--norm: 'layer' is not one of batch, instance, none"),
        ({"hidden_features": "32,x"}, "--hidden-features: '32,x' is not a valid int,..."),
        ({"batch_norm": "maybe"}, "--batch-norm: 'maybe' is not a valid bool"),
        ({"epochs": 2.5}, "--epochs: 2.5 is not a valid int"),
        ({"unknown": 1}, "unknown hyperparameter 'unknown'"),
    ],
)
def test_bad_values_are_one_clear_line(values, message):
    with pytest.raises(UserError) as info:
        build_config(Config, values)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_json_round_trip_keeps_types():
    cfg = build_config(Config, {"hidden_features": "8,4", "norm": "batch"})
    text = json.dumps(config_to_dict(cfg))
    assert config_from_json(Config, text) == cfg


def test_fields_carry_help_and_flags():
    fields = {f.name: f for f in config_fields(Config)}
    assert fields["hidden_features"].flag == "--hidden-features"
    assert fields["hidden_features"].format_default() == "64,64"
    assert fields["epochs"].resumable and not fields["hidden_features"].resumable
    assert all(f.help for f in fields.values())


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_files(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        path.write_text('hidden-features = [16, 16]\nepochs = 3\nnorm = "none"\n')
    else:
        path.write_text('{"hidden_features": [16, 16], "epochs": 3, "norm": "none"}')
    cfg = build_config(Config, load_config_file(path))
    assert (cfg.hidden_features, cfg.epochs, cfg.norm) == ((16, 16), 3, "none")


def test_bad_config_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = = 3")
    with pytest.raises(UserError, match="cannot parse"):
        load_config_file(path)
    with pytest.raises(UserError, match="no such file"):
        load_config_file(tmp_path / "missing.toml")


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf"])
def test_float_hyperparameters_must_be_finite(text):
    # NaN passes every `value < minimum` check; torch would fail later with a traceback.
    floats = [f for f in config_fields(DensityConfig) if f.kind is float]
    assert {"lr", "weight_decay", "grad_clip", "logit_lambda", "smoothing"} <= {
        f.name for f in floats
    }
    for field in floats:
        with pytest.raises(UserError, match=f"^{field.flag}: '{text}' is not a finite number$"):
            build_config(DensityConfig, {field.name: text})
    with pytest.raises(UserError, match="not a finite number"):
        build_config(DensityConfig, {"lr": float("nan")})  # as a TOML or JSON file gives it


def test_patience_is_zero_or_more():
    assert build_config(DensityConfig, {"patience": "0"}).patience == 0  # 0 = never stop
    with pytest.raises(UserError, match="--patience: '-1' is below the minimum 0"):
        build_config(DensityConfig, {"patience": "-1"})


def test_config_from_a_pipe(tmp_path):
    """`--config <(echo 'lr = 0.001')`: a FIFO, not a regular file, that can be read once."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def shell() -> None:  # the other side of the process substitution
        with open(fifo, "w") as handle:
            handle.write("lr = 0.002\n")

    writer = threading.Thread(target=shell, daemon=True)
    writer.start()
    try:
        assert load_config_file(fifo) == {"lr": 0.002}
    finally:
        writer.join(timeout=5)
    with pytest.raises(UserError, match="is a folder"):
        load_config_file(tmp_path)


def test_a_tuples_choices_hold_for_each_item():
    @dataclass
    class Staged(TrainConfig):
        stages: tuple[str, ...] = option(("a", "b"), "stages", choices=("a", "b", "c"))

    assert build_config(Staged, {"stages": "c,a"}).stages == ("c", "a")
    with pytest.raises(UserError, match="--stages: 'd' is not one of a, b, c"):
        build_config(Staged, {"stages": "a,d"})
