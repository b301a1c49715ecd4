"""Checkpoints: safetensors round trips, atomic writes, and clear errors for bad files."""

import os
import random
import stat

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gentool.checkpoint import (
    CheckpointMeta,
    load_resume,
    read_checkpoint,
    read_resume_header,
    resolve_checkpoint,
    save_model,
    save_resume,
)
from gentool.errors import UserError
from gentool.loading import read_family_checkpoint


def _meta(family="maf"):
    return CheckpointMeta(
        family=family,
        plugin="flows",
        plugin_version="0.1.0",
        config={"hidden_features": [8, 8], "lr": 1e-3},
        data='{"kind": "images"}',
        epoch=3,
        step=30,
        metrics={"val_loss": 1.5},
    )


@pytest.fixture
def state():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    return net.state_dict()


def test_round_trip(tmp_path, state):
    path = tmp_path / "model.safetensors"
    save_model(path, state, _meta())
    meta, tensors = read_checkpoint(path)
    assert meta.family == "maf" and meta.epoch == 3 and meta.metrics == {"val_loss": 1.5}
    assert meta.config["hidden_features"] == [8, 8]
    assert tensors.keys() == state.keys()
    for key in state:
        assert torch.equal(tensors[key], state[key])
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp files left


def test_run_folder_or_file(tmp_path, state):
    save_model(tmp_path / "model.safetensors", state, _meta())
    assert resolve_checkpoint(tmp_path) == tmp_path / "model.safetensors"
    with pytest.raises(UserError, match="no such file or run folder"):
        resolve_checkpoint(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="folder without model.safetensors"):
        resolve_checkpoint(empty)


def test_wrong_family(tmp_path, state):
    save_model(tmp_path / "m.safetensors", state, _meta("cyclegan"))
    with pytest.raises(UserError, match="is a 'cyclegan' checkpoint, not 'maf'; use the 'cy"):
        read_family_checkpoint(tmp_path / "m.safetensors", "maf")


def test_foreign_safetensors(tmp_path, state):
    save_file(dict(state), tmp_path / "foreign.safetensors")
    with pytest.raises(UserError, match="not a gentool checkpoint"):
        read_checkpoint(tmp_path / "foreign.safetensors")


def test_not_safetensors_at_all(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x80\x04 this is a pickle, not safetensors")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        read_checkpoint(path)


def test_truncated(tmp_path, state):
    path = tmp_path / "model.safetensors"
    save_model(path, state, _meta())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(UserError) as info:
        read_checkpoint(path)
    assert "truncated" in str(info.value)


def test_tampered_weights(tmp_path, state):
    path = tmp_path / "model.safetensors"
    save_model(path, state, _meta())
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        read_checkpoint(path)


def test_newer_format(tmp_path, state):
    meta = _meta()
    meta.format = 99
    save_model(tmp_path / "m.safetensors", state, meta)
    with pytest.raises(UserError, match="upgrade gentool"):
        read_checkpoint(tmp_path / "m.safetensors")


def test_resume_state_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - e / 10)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 3)).pow(2).sum().backward()
        opt.step()
        sched.step()
    state = {
        "networks": net.state_dict(),
        "optimizers": {"g": opt.state_dict()},
        "schedulers": {"g": sched.state_dict()},
        "python": random.getstate(),
        "request": {"data": "digits", "options": {"image_size": None}},
        "meta": {"gentool.family": "maf"},
    }
    path = tmp_path / "resume.safetensors"
    save_resume(path, state)
    loaded = load_resume(path)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1.0)
    opt2.load_state_dict(loaded["optimizers"]["g"])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for key, value in opt.state_dict()["state"][0].items():
        assert torch.equal(opt2.state_dict()["state"][0][key], value)
    assert loaded["schedulers"]["g"]["last_epoch"] == 3
    random.setstate((loaded["python"][0], tuple(loaded["python"][1]), loaded["python"][2]))
    header = read_resume_header(path)
    assert header["request"]["data"] == "digits"
    assert header["meta"]["gentool.family"] == "maf"


def test_resume_state_damaged(tmp_path):
    path = tmp_path / "resume.safetensors"
    save_resume(path, {"w": torch.arange(10.0)})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        load_resume(path)


def test_checkpoint_files_follow_the_umask(tmp_path, state):
    """Like every other file of a run, not private to the user (mkstemp's 0600)."""
    previous = os.umask(0o022)
    try:
        save_model(tmp_path / "model.safetensors", state, _meta())
        save_resume(tmp_path / "resume.safetensors", {"w": torch.zeros(2)})
    finally:
        os.umask(previous)
    for name in ("model.safetensors", "resume.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("key", "value"),
    [("gentool.data", "{not json"), ("gentool.config", "[1, 2]"), ("gentool.epoch", "x")],
)
def test_damaged_metadata_is_one_clear_error(tmp_path, state, key, value):
    metadata = {**_meta().to_strings(), key: value}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "m.safetensors", metadata)
    with pytest.raises(UserError, match="damaged gentool metadata"):
        read_checkpoint(tmp_path / "m.safetensors")


def test_a_resume_state_is_not_taken_for_a_model(tmp_path):
    save_resume(tmp_path / "resume.safetensors", {"w": torch.zeros(2)})
    with pytest.raises(UserError, match="resume state, not a model; use the run folder"):
        read_family_checkpoint(tmp_path / "resume.safetensors", "maf")


def test_a_family_that_is_not_installed_says_so(tmp_path, state):
    save_model(tmp_path / "m.safetensors", state, _meta("realnvp-not-here"))
    with pytest.raises(UserError, match="'realnvp-not-here' is not installed"):
        read_family_checkpoint(tmp_path / "m.safetensors", "maf")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"meta": {"gentool.family": "maf"}}, "damaged resume state"),  # no request
        ({"meta": 5, "request": {}}, "damaged resume state"),
        ({"meta": {"gentool.family": 5}, "request": {}}, "the metadata must be strings"),
    ],
)
def test_damaged_resume_header_is_one_clear_error(tmp_path, state, message):
    save_resume(tmp_path / "resume.safetensors", state)
    with pytest.raises(UserError, match=message):
        read_resume_header(tmp_path / "resume.safetensors")


def test_newer_resume_format(tmp_path):
    path = tmp_path / "resume.safetensors"
    save_resume(path, {"meta": {"gentool.family": "maf"}, "request": {"data": "x", "options": {}}})
    tensors = load_file(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = {**handle.metadata(), "gentool.format": "99"}
    save_file(tensors, path, metadata)
    for read in (read_resume_header, load_resume):
        with pytest.raises(UserError, match="resume format '99'.*upgrade gentool"):
            read(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("height", -8), "damaged gentool metadata (the data: height must be a positive"),
        (("channels", 0), "damaged gentool metadata (the data: channels must be a positive"),
        (("levels", 1), "cannot rebuild the model from its metadata: the data has 1 pixel"),
        (("logit_lambda", 0.7), "cannot rebuild the model from its metadata: --logit-lambda"),
    ],
)
def test_an_edited_data_description_or_config_is_one_clear_error(tmp_path, capsys, edit, message):
    """Values no run writes (a hand-edited header) name the file; never a traceback."""
    import json

    from gentool.cli import main
    from gentool.config import config_to_dict
    from gentool.data.base import DataInfo
    from gentool.family import DataKind
    from gentool_flows.config import MAFConfig
    from gentool_flows.models import MAFModel

    info = DataInfo(DataKind.IMAGES, 1, 4, 4, levels=17, source="tiny")
    config = MAFConfig(hidden_features=(8,), num_layers=1)
    model = MAFModel(config, info, torch.device("cpu"))
    data, hyper = json.loads(info.to_json()), config_to_dict(model.config)
    key, value = edit
    (data if key in data else hyper)[key] = value
    meta = CheckpointMeta("maf", "flows", "0", hyper, json.dumps(data))
    path = tmp_path / "model.safetensors"
    save_model(path, model.networks.state_dict(), meta)
    assert (
        main(["sample", "maf", "-c", str(path), "-n", "1", "--out", str(tmp_path / "s.png")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err, err
    assert err.count("\n") == 1


#: A ``gentool.data`` as gentool wrote it before its preprocessing was typed, plus a
#: plugin's own key: a checkpoint of that time must load with every key kept.
OLD_DATA = (
    '{"channels": 1, "class_names": ["a", "b"], "height": 4, "kind": "images", "levels": 17, '
    '"normal_class": "a", "preprocessing": {"antialias": true, "channels": 1, "generator": '
    '"bars", "interpolation": "bicubic", "layout": "classes", "range": [0.0, 1.0], '
    '"resize": [4, 4]}, "source": "tiny", "width": 4}'
)


def test_an_old_checkpoint_loads_with_its_data_description_whole(tmp_path):
    from gentool.config import config_to_dict
    from gentool.data.base import DataInfo
    from gentool.loading import load_model
    from gentool_flows.config import MAFConfig
    from gentool_flows.models import MAFModel

    config = MAFConfig(hidden_features=(8,), num_layers=1)
    model = MAFModel(config, DataInfo.from_json(OLD_DATA), torch.device("cpu"))
    meta = CheckpointMeta("maf", "flows", "0", config_to_dict(model.config), OLD_DATA)
    save_model(tmp_path / "model.safetensors", model.networks.state_dict(), meta)
    loaded = load_model("maf", tmp_path, "cpu")
    assert loaded.data.to_json() == OLD_DATA
    assert loaded.data.preprocessing.interpolation == "bicubic"
    assert loaded.data.preprocessing.details["generator"] == "bars"
    # Scored images are prepared as the description says: grey, 4x4.
    assert loaded.prepare(torch.rand(2, 3, 9, 7)).shape == (2, 1, 4, 4)
