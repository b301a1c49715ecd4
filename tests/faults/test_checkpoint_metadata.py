"""A checkpoint's metadata: under a checksum from format 2 on, a missing checksum damage
(a loud warning for format 1, which had none for its metadata), and hyperparameters that
do not fit the weights refused before any network is built or weight read."""

import dataclasses
import json
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import gentool.loading as loading
from gentool.checkpoint import load_resume, read_header, read_resume_header, seal_metadata
from gentool.cli import main
from gentool.commands import _fresh_model
from gentool.errors import UserError
from gentool.loading import load_model
from gentool.registry import get_registry

TINY = ["--hidden-features", "8", "--num-layers", "1", "--batch-size", "64", "-q"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("maf") / "run"
    args = ["train", "maf", "--data", "digits", *TINY, "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    return out


def _metadata(path):
    with safe_open(str(path), "pt") as handle:
        return handle.metadata()


def _rewrite(source, target, edit, seal=True):
    """``source`` with its metadata edited: sealed anew (an edit with the checksum redone,
    or a file of a format without one) or not (damage)."""
    meta = _metadata(source)
    edit(meta)
    save_file(load_file(source), target, seal_metadata(meta) if seal else meta)
    return target


def _edit_config(key, value):
    def edit(meta):
        config = json.loads(meta["gentool.config"])
        config[key] = value
        meta["gentool.config"] = json.dumps(config)

    return edit


def _edit_data(**values):
    def edit(meta):
        meta["gentool.data"] = json.dumps({**json.loads(meta["gentool.data"]), **values})

    return edit


def test_edited_metadata_fails_its_checksum(run, tmp_path):
    deeper = _edit_config("num_layers", 2)
    path = _rewrite(run / "model.safetensors", tmp_path / "m.safetensors", deeper, seal=False)
    with pytest.raises(UserError, match="metadata does not match its checksum"):
        load_model("maf", path, "cpu")


@pytest.mark.parametrize("key", ["gentool.sha256_meta", "gentool.sha256"])
def test_a_missing_checksum_is_damage(run, tmp_path, key):
    def drop(meta):
        del meta[key]

    path = _rewrite(run / "model.safetensors", tmp_path / "m.safetensors", drop, seal=False)
    with pytest.raises(UserError, match="damaged gentool metadata.*checksum is missing"):
        read_header(path)


def test_a_format_1_file_loads_with_one_warning(run, tmp_path, capsys):
    """As gentool wrote checkpoints before the metadata had a checksum."""

    def format_1(meta):
        meta["gentool.format"] = "1"
        del meta["gentool.sha256_meta"]

    path = _rewrite(run / "model.safetensors", tmp_path / "old.safetensors", format_1, seal=False)
    capsys.readouterr()
    model = load_model("maf", path, "cpu")
    assert model.checkpoint_meta.format == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {path} is an older checkpoint")
    assert "(format 1) whose metadata has no checksum" in err


class _Builds:
    """Records the devices a family's model is built on."""

    def __init__(self, monkeypatch, family="maf"):
        self.devices = []
        model_class = get_registry().family(family).load_model_class()
        init = model_class.__init__

        def recorded(model, config, data, device):
            self.devices.append(torch.device(device).type)
            init(model, config, data, device)

        monkeypatch.setattr(model_class, "__init__", recorded)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_edit_config("num_layers", 3), "missing (flow.layers.1."),
        (_edit_config("hidden_features", [10**9]), "model [1000000000]"),
        (_edit_data(height=100_000, width=100_000), "model [10000000000]"),
    ],
)
def test_metadata_that_does_not_fit_is_refused_before_any_network(
    run, tmp_path, monkeypatch, edit, message
):
    """Sealed anew: what a file of format 1 or a redone checksum lets through. The networks
    are built on the meta device alone (a billion hidden units would otherwise be 4 GB)."""
    path = _rewrite(run / "model.safetensors", tmp_path / "m.safetensors", edit)
    builds = _Builds(monkeypatch)
    with pytest.raises(UserError, match="does not fit the 'maf' networks") as info:
        load_model("maf", path, "cpu")
    assert message in str(info.value)
    assert builds.devices == ["meta"]


def test_a_thousandfold_depth_is_refused_while_the_meta_build_runs(run, tmp_path, monkeypatch):
    path = _rewrite(
        run / "model.safetensors", tmp_path / "m.safetensors", _edit_config("num_layers", 100_000)
    )
    builds = _Builds(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(UserError, match="its metadata asks for more than 5,024 tensors, the file"):
        load_model("maf", path, "cpu")
    assert builds.devices == ["meta"]
    assert time.perf_counter() - start < 60  # seconds; the whole build took minutes and 13 GB


def test_a_fitting_checkpoint_builds_twice_and_keeps_the_rng(run):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    spec = get_registry().family("maf")
    meta = read_header(run / "model.safetensors")
    config = loading.config_from_json(spec.config, json.dumps(meta.config))
    info = loading.DataInfo.from_json(meta.data)
    assert loading._expected_state(spec, config, info, run, 6) is not None
    assert torch.equal(torch.rand(3), expected)  # the meta build drew nothing


@pytest.mark.parametrize("family", sorted(get_registry().families))
def test_every_family_builds_on_the_meta_device(family):
    """The early check works for each built-in family (a frozen backbone included): the
    meta build's state has the names and shapes of the real one."""
    spec = get_registry().family(family)
    values = dict(spec.test_config)
    if "backbone_weights" in {f.name for f in dataclasses.fields(spec.config)}:
        values.setdefault("backbone_weights", "none")  # no download in a test
    real = _fresh_model(spec, None, None, values, torch.device("cpu"))
    state = loading._expected_state(spec, real.config, real.data, "x", 10_000)
    assert state is not None
    assert {k: v.shape for k, v in state.items()} == {
        k: v.shape for k, v in real.networks.state_dict().items()
    }
    assert all(v.is_meta for v in state.values())


def test_an_edited_resume_state_is_refused_in_one_line(run, tmp_path, capsys):
    resume = tmp_path / "run"
    resume.mkdir()
    for name in ("model.safetensors", "metrics.jsonl"):
        (resume / name).write_bytes((run / name).read_bytes())

    def deeper(meta):
        old, new = '\\"num_layers\\": 1', '\\"num_layers\\": 9'
        assert old in meta["gentool.state"]
        meta["gentool.state"] = meta["gentool.state"].replace(old, new)

    _rewrite(run / "resume.safetensors", resume / "resume.safetensors", deeper, seal=False)
    with pytest.raises(UserError, match="metadata does not match its checksum"):
        read_resume_header(resume / "resume.safetensors")
    with pytest.raises(UserError, match="metadata does not match its checksum"):
        load_resume(resume / "resume.safetensors")
    capsys.readouterr()
    args = ["train", "maf", "--resume", "--epochs", "2", "-q", "--out", str(resume)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metadata does not match its checksum" in err


def test_a_format_1_resume_state_resumes_with_a_warning(run, tmp_path, capsys):
    resume = tmp_path / "run"
    resume.mkdir()
    for name in ("model.safetensors", "metrics.jsonl"):
        (resume / name).write_bytes((run / name).read_bytes())

    def format_1(meta):
        meta["gentool.format"] = "1"
        del meta["gentool.sha256_meta"]

    _rewrite(run / "resume.safetensors", resume / "resume.safetensors", format_1, seal=False)
    capsys.readouterr()
    assert main(["train", "maf", "--resume", "--epochs", "2", "-q", "--out", str(resume)]) == 0
    err = capsys.readouterr().err
    assert err.count("is an older resume state (format 1)") == 1
    assert "gentool.sha256_meta" in _metadata(resume / "resume.safetensors")  # written anew
