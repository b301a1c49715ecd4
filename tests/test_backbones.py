"""Backbone features: stages, frozen eval mode, the seeded weights, and every weights source
(torchvision's cache, a user's file, refusals), offline: nothing here downloads."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

import gentool.api
from gentool.backbones import BACKBONES, STAGES, parse_stages, weights
from gentool.backbones.network import Backbone
from gentool.backbones.weights import (
    imagenet_weights_path,
    load_backbone,
    read_hub_weights,
    read_weights_file,
)
from gentool.errors import UserError

# resnet18 up to layer1, seed 0: the "none" weights must never change (a checkpoint trained
# on them stores this digest), on any machine.
RESNET18_LAYER1_SEED0 = "fde60c0682907102dd63d4cb21985566a545cbf7ab58a9ff4ea7885d81ea0f65"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def full_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A whole torchvision resnet18 state dict (fc included) holding seed ``seed``'s weights."""
    state = torchvision.models.resnet18(weights=None).state_dict()
    state.update(Backbone("resnet18", STAGES, seed=seed).state_dict())
    return state


def test_resnet18_stages_shapes_channels_and_strides():
    backbone = Backbone("resnet18", STAGES)
    features = backbone(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [
        (2, 64, 16, 16),
        (2, 128, 8, 8),
        (2, 256, 4, 4),
        (2, 512, 2, 2),
    ]
    assert backbone.channels == (64, 128, 256, 512)
    assert backbone.strides == (4, 8, 16, 32)
    assert backbone.feature_sizes(64, 64) == [tuple(f.shape[-2:]) for f in features]


def test_stages_come_in_the_order_asked_and_the_deeper_layers_are_not_kept():
    full = Backbone("resnet18", STAGES, seed=1)
    part = Backbone("resnet18", ("layer2", "layer1"), seed=1)
    assert not hasattr(part, "layer3") and not hasattr(part, "layer4")
    assert all(not key.startswith(("layer3", "layer4", "fc")) for key in part.state_dict())
    assert part.channels == (128, 64) and part.strides == (8, 4)
    images = torch.rand(1, 3, 40, 40)
    first, second = part(images)
    whole = full(images)
    # The kept layers' weights come first in the draw order: the same as the whole network's.
    assert torch.equal(first, whole[1]) and torch.equal(second, whole[0])


def test_feature_sizes_round_up_like_the_network_at_odd_sizes():
    backbone = Backbone("resnet18", STAGES)
    features = backbone(torch.rand(1, 3, 37, 50))
    assert backbone.feature_sizes(37, 50) == [tuple(f.shape[-2:]) for f in features]


def test_a_wide_backbone_at_a_small_size():
    backbone = Backbone("wide_resnet50_2", "layer1,layer2,layer3")
    features = backbone(torch.rand(1, 3, 32, 32))
    assert [tuple(f.shape) for f in features] == [(1, 256, 8, 8), (1, 512, 4, 4), (1, 1024, 2, 2)]
    assert backbone.channels == (256, 512, 1024) and backbone.strides == (4, 8, 16)
    assert not hasattr(backbone, "layer4")


def test_the_table_matches_torchvision():
    for name, spec in BACKBONES.items():
        with torch.device("meta"):
            whole = spec.builder()(weights=None)
        x = torch.empty(1, 3, 64, 64, device="meta")
        x = whole.maxpool(whole.relu(whole.bn1(whole.conv1(x))))
        for stage, channels, stride in zip(STAGES, spec.channels, spec.strides, strict=True):
            x = getattr(whole, stage)(x)
            assert tuple(x.shape[1:]) == (channels, 64 // stride, 64 // stride), (name, stage)
        url = spec.imagenet_weights().url
        assert weights._HASHED_NAME.fullmatch(url.rsplit("/", 1)[-1]), url
    assert {"resnet18", "wide_resnet50_2"} <= set(BACKBONES)


def test_frozen_and_always_in_eval_mode():
    backbone = Backbone("resnet18", ("layer1", "layer2"))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    assert backbone.train() is backbone
    assert not backbone.training and not any(m.training for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone(torch.rand(4, 3, 32, 32) * 3)
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch norm stats too


def test_features_feed_a_trained_layer_inside_autograd():
    backbone = Backbone("resnet18", "layer1")
    head = torch.nn.Conv2d(64, 1, 1)
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    (features,) = backbone(images)
    assert not features.requires_grad
    head(features).square().mean().backward()
    assert head.weight.grad is not None and images.grad is None


def test_grey_images_equal_their_rgb_repeat():
    backbone = Backbone("resnet18", ("layer1", "layer3"))
    grey = torch.rand(2, 1, 32, 32)
    for a, b in zip(backbone(grey), backbone(grey.repeat(1, 3, 1, 1)), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="expected images"):
        backbone(torch.rand(2, 2, 32, 32))


def test_random_weights_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    a = load_backbone("resnet18", "layer1", weights="none", seed=0)
    assert torch.equal(torch.rand(4), expected)
    b = load_backbone("resnet18", "layer1", weights="none", seed=0)
    c = load_backbone("resnet18", "layer1", weights="none", seed=1)
    assert a.sha256 == b.sha256 == RESNET18_LAYER1_SEED0
    assert c.sha256 != a.sha256
    images = torch.rand(1, 3, 32, 32)
    assert torch.equal(a(images)[0], b(images)[0])
    assert not torch.equal(a(images)[0], c(images)[0])
    assert a.weights == "none"


def test_random_weights_are_the_same_bits_without_the_avx2_kernels():
    # torch's normal sampler differs between its AVX2 and portable kernels (ARM machines);
    # the uniform draws used here must not.
    code = (
        "from gentool.backbones.network import Backbone;"
        "print(Backbone('resnet18', 'layer1', seed=0).sha256)"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == RESNET18_LAYER1_SEED0


def test_a_weights_file_round_trip(tmp_path):
    path = tmp_path / "mine.pth"
    torch.save(full_state_dict(seed=7), path)
    loaded = load_backbone("resnet18", ("layer1", "layer2"), weights=path)
    reference = Backbone("resnet18", ("layer1", "layer2"), seed=7)
    assert loaded.sha256 == reference.sha256
    images = torch.rand(2, 3, 32, 32)
    for a, b in zip(loaded(images), reference(images), strict=True):
        assert torch.equal(a, b)
    assert loaded.weights == str(path)
    # A training checkpoint that keeps the weights under "model" (torchvision's references).
    torch.save({"model": full_state_dict(seed=7), "epoch": 3}, tmp_path / "checkpoint.pth")
    again = load_backbone("resnet18", ("layer1", "layer2"), weights=tmp_path / "checkpoint.pth")
    assert again.sha256 == reference.sha256


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    shown = tmp_path / "shown"
    pickle.loads(pickle.dumps(_Payload(shown)))  # a plain unpickle would run it
    assert shown.exists()
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    with pytest.raises(UserError) as err:
        load_backbone("resnet18", "layer1", weights=path)
    assert str(path) in one_line(err) and "refused" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("size", [0, 20, -100])
def test_a_truncated_file_is_one_line_naming_it(tmp_path, size):
    whole = tmp_path / "whole.pth"
    torch.save(full_state_dict(seed=0), whole)
    data = whole.read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:size] if size >= 0 else data[: len(data) + size])
    with pytest.raises(UserError) as err:
        load_backbone("resnet18", "layer1", weights=path)
    assert str(path) in one_line(err) and "truncated or corrupted" in str(err.value)


def test_files_that_are_not_a_fitting_state_dict(tmp_path):
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(UserError, match="not a state dict") as err:
        load_backbone("resnet18", "layer1", weights=tensor)
    assert str(tensor) in one_line(err)
    other = tmp_path / "resnet50.pth"
    torch.save(Backbone("resnet50", "layer1").state_dict(), other)
    with pytest.raises(UserError, match="do not fit resnet18 up to layer1") as err:
        load_backbone("resnet18", "layer1", weights=other)
    assert str(other) in one_line(err)
    with pytest.raises(UserError, match="no such file"):
        load_backbone("resnet18", "layer1", weights=tmp_path / "missing.pth")


def test_a_torchvision_named_file_must_match_the_hash_in_its_name(tmp_path):
    source = tmp_path / "source.pth"
    torch.save(full_state_dict(seed=0), source)
    prefix = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    wrong = tmp_path / f"resnet18-{'0' if prefix[0] != '0' else '1'}{prefix[1:]}.pth"
    wrong.write_bytes(source.read_bytes())
    with pytest.raises(UserError, match="modified or damaged") as err:
        load_backbone("resnet18", "layer1", weights=wrong)
    assert str(wrong) in one_line(err)
    right = tmp_path / f"resnet18-{prefix}.pth"
    right.write_bytes(source.read_bytes())
    assert load_backbone("resnet18", "layer1", weights=right).sha256 == RESNET18_LAYER1_SEED0


def test_imagenet_offline_says_what_to_download_and_where():
    url = BACKBONES["resnet18"].imagenet_weights().url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    assert imagenet_weights_path("resnet18") == cache
    with pytest.raises(UserError) as err:
        load_backbone("resnet18", ("layer1", "layer2"), weights="imagenet")
    message = one_line(err)
    assert url in message and str(cache) in message and "--backbone-weights FILE" in message
    assert not cache.exists()


def test_imagenet_from_the_cache_needs_no_network(tmp_path, monkeypatch):
    source = tmp_path / "source.pth"
    torch.save(full_state_dict(seed=5), source)
    prefix = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    url = f"https://download.pytorch.org/models/resnet18-{prefix}.pth"
    monkeypatch.setattr(weights, "imagenet_url", lambda name: url)
    cache = Path(torch.hub.get_dir()) / "checkpoints" / f"resnet18-{prefix}.pth"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(source.read_bytes())
    backbone = load_backbone("resnet18", "layer1", weights="imagenet")
    assert backbone.sha256 == Backbone("resnet18", "layer1", seed=5).sha256
    assert backbone.weights == "imagenet"
    # Damaged in the cache: torch hub would not notice; the name's hash does.
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cache.write_bytes(bytes(data))
    with pytest.raises(UserError, match="modified or damaged"):
        read_hub_weights(url)


def test_a_download_goes_to_the_cache_with_torch_hubs_hash_check(tmp_path, monkeypatch):
    source = tmp_path / "source.pth"
    torch.save(full_state_dict(seed=2), source)
    prefix = hashlib.sha256(source.read_bytes()).hexdigest()[:10]
    url = f"https://example.invalid/models/resnet18-{prefix}.pth"
    calls = []

    def download(got_url, dst, hash_prefix=None, progress=True):
        calls.append((got_url, hash_prefix, progress))
        Path(dst).write_bytes(source.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    state = read_hub_weights(url)
    assert calls == [(url, prefix, True)]
    assert torch.equal(state["conv1.weight"], read_weights_file(source)["conv1.weight"])
    read_hub_weights(url)
    assert len(calls) == 1  # cached


def test_another_backbone_than_the_checkpoints_is_refused():
    trained = load_backbone("resnet18", "layer1", weights="none", seed=0)
    same = load_backbone("resnet18", "layer1", "none", seed=0, expected_sha256=trained.sha256)
    assert same.sha256 == trained.sha256
    with pytest.raises(UserError) as err:
        load_backbone("resnet18", "layer1", "none", seed=1, expected_sha256=trained.sha256)
    message = one_line(err)
    assert "differ from the ones the model was trained with" in message
    assert trained.sha256[:12] in message and "seed 1" in message
    assert load_backbone("resnet18", "layer1", "none", seed=1).sha256[:12] in message


def test_unknown_names_and_stages_are_one_line():
    with pytest.raises(UserError, match="unknown backbone 'vgg16'; choose one of resnet18"):
        load_backbone("vgg16", "layer1", weights="none")
    with pytest.raises(UserError, match="unknown backbone stage 'layer5'"):
        Backbone("resnet18", ("layer1", "layer5"))
    for bad in ("", [], "layer1,layer1"):
        with pytest.raises(UserError):
            parse_stages(bad)
    assert parse_stages(["layer3", "layer1"]) == ("layer3", "layer1")


def test_the_public_api_exports_them():
    assert gentool.api.Backbone is Backbone
    assert gentool.api.load_backbone is load_backbone
    assert gentool.api.BACKBONES is BACKBONES


def test_the_table_imports_no_torch():
    code = (
        "import sys; from gentool.backbones import BACKBONES, parse_stages;"
        "parse_stages('layer1'); print('torch' in sys.modules, sorted(BACKBONES))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False")


@pytest.mark.cuda
def test_on_cuda_the_same_features_and_digest():
    cpu = load_backbone("resnet18", ("layer1", "layer2"), weights="none", seed=0)
    gpu = load_backbone("resnet18", ("layer1", "layer2"), weights="none", seed=0, device="cuda")
    assert gpu.sha256 == cpu.sha256
    images = torch.rand(2, 3, 64, 64)
    for a, b in zip(cpu(images), gpu(images), strict=True):
        assert b.device.type == "cuda"
        torch.testing.assert_close(a, b.cpu(), rtol=1e-3, atol=1e-3)
