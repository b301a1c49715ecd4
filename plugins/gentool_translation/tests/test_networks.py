"""The translation networks: shapes, the PatchGAN receptive field, init, reference layouts."""

import pytest
import torch
from torch import nn

from gentool_translation.networks import (
    PatchDiscriminator,
    PixelDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    build_discriminator,
    init_weights,
    output_size,
    receptive_field,
    unet_downsamplings,
)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("size", [64, 128, 256])
def test_every_network_keeps_its_shape(size):
    x = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        for n_blocks in (6, 9):
            out = ResnetGenerator(3, 3, ngf=4, n_blocks=n_blocks)(x)
            assert out.shape == x.shape and out.abs().max() <= 1
        unet = UnetGenerator(3, 3, unet_downsamplings(size), ngf=4)
        assert unet(x).shape == x.shape
        patch = PatchDiscriminator(3, ndf=4)
        side = output_size(patch, size)
        assert patch(x).shape == (1, 1, side, side)
        assert PixelDiscriminator(3, ndf=4)(x).shape == (1, 1, size, size)
    # The papers' 256 px PatchGAN judges a 30x30 grid of patches.
    assert output_size(PatchDiscriminator(3), 256) == 30


def test_unet_depth_follows_the_image_size():
    assert unet_downsamplings(256) == 8  # unet_256
    assert unet_downsamplings(128) == 7  # unet_128
    assert unet_downsamplings(96) == 5
    with pytest.raises(ValueError):
        UnetGenerator(3, 3, downsamplings=4)


def test_generators_take_other_channel_counts():
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert ResnetGenerator(1, 3, ngf=4, n_blocks=1)(x).shape == (2, 3, 32, 32)
        assert UnetGenerator(1, 3, 5, ngf=4)(x).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70), (4, 142)])
def test_patchgan_receptive_field_is_computed(n_layers, field):
    assert receptive_field(PatchDiscriminator(3, ndf=4, n_layers=n_layers)) == field
    assert receptive_field(PixelDiscriminator(3, ndf=4)) == 1


def test_patchgan_receptive_field_is_70_by_gradients():
    torch.manual_seed(0)
    # Without normalisation every output depends only on its own patch.
    net = build_discriminator("basic", 3, ndf=4, n_layers=3, norm="none")
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    out = net(x)
    centre = out.shape[-1] // 2
    out[0, 0, centre, centre].backward()
    touched = x.grad.abs().sum(1)[0] > 0
    rows = touched.any(1).nonzero().flatten()
    cols = touched.any(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_parameter_counts_match_the_reference():
    # The reference prints these counts (in millions) for its default networks.
    assert round(parameter_count(ResnetGenerator(3, 3, 64, 9)) / 1e6, 3) == 11.378
    assert round(parameter_count(PatchDiscriminator(3, 64, 3, "instance")) / 1e6, 3) == 2.765
    unet = UnetGenerator(3, 3, 8, 64, "batch", dropout=True)
    assert round(parameter_count(unet) / 1e6, 3) == 54.414
    # Dropout sits in the three innermost x8 decoder levels of unet_256.
    assert sum(isinstance(m, nn.Dropout) for m in unet.modules()) == 3


def test_state_dict_keys_follow_the_reference_layout():
    # resnet_9blocks as in the reference's checkpoints: blocks at 10-18, head conv at 26.
    keys = set(ResnetGenerator(3, 3, 4, 9).state_dict())
    expected = {"model.1.weight", "model.18.conv_block.5.weight", "model.19.weight"}
    assert expected | {"model.26.weight", "model.26.bias"} <= keys
    keys = set(UnetGenerator(3, 3, 5, 4).state_dict())
    assert {"model.model.0.weight", "model.model.1.model.1.weight"} <= keys


def test_instance_norm_keeps_no_statistics_and_batch_norm_does():
    assert not any(b.numel() for b in ResnetGenerator(3, 3, 4, 1, norm="instance").buffers())
    assert any(b.numel() for b in ResnetGenerator(3, 3, 4, 1, norm="batch").buffers())


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_is_seeded_by_the_global_generator(init_type):
    def build():
        torch.manual_seed(3)
        return init_weights(UnetGenerator(3, 3, 5, 8, "batch"), init_type, 0.02)

    first, second = build().state_dict(), build().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_normal_init_matches_the_papers():
    torch.manual_seed(0)
    net = init_weights(ResnetGenerator(3, 3, 16, 2, norm="batch"), "normal", 0.02)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.std().item() - 0.02) < 0.002
    assert all(m.bias is None or not m.bias.any() for m in convs)
    scales = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1.0) < 0.01
