"""Pix2Pix: defaults, training on paired procedural images, direction, metrics, scoring."""

import importlib.util

import pytest
import torch

from gentool.api import DataInfo, DataKind, UserError, l1_error, psnr, ssim
from gentool_translation.config import Pix2PixConfig
from gentool_translation.pix2pix import Pix2PixModel

SIZE = 32


def paired_batch(count: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Edges-to-filled pairs: A is a square's outline, B the same square filled with colour."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    a = torch.zeros(count, 3, SIZE, SIZE)
    b = torch.zeros(count, 3, SIZE, SIZE)
    for i in range(count):
        y, x = torch.randint(10, 22, (2,), generator=generator).tolist()
        radius = int(torch.randint(4, 9, (1,), generator=generator))
        inside = ((rows - y).abs() <= radius) & ((cols - x).abs() <= radius)
        border = inside & ~(((rows - y).abs() < radius) & ((cols - x).abs() < radius))
        a[i] = border.float().expand(3, -1, -1)
        colour = torch.rand(3, 1, 1, generator=generator)
        b[i] = torch.where(inside, colour, torch.full_like(b[i], 0.9))
    return {"A": a, "B": b}


def make_model(direction: str = "a2b", **overrides) -> Pix2PixModel:
    torch.manual_seed(0)
    config = Pix2PixConfig(**{"ngf": 4, "ndf": 4, **overrides})
    data = DataInfo(
        kind=DataKind.PAIRED,
        channels=3,
        height=SIZE,
        width=SIZE,
        preprocessing={"direction": direction},
    )
    return Pix2PixModel(config, data, torch.device("cpu"))


def test_reference_defaults():
    config = Pix2PixConfig()
    assert (config.generator, config.norm, config.gan_mode) == ("unet", "batch", "vanilla")
    assert (config.pool_size, config.lambda_l1, config.dropout) == (0, 100.0, True)
    assert (config.lr, config.beta1, config.batch_size) == (0.0002, 0.5, 1)


def test_networks_are_a_unet_and_a_conditional_patchgan():
    model = make_model()
    assert set(model.networks) == {"G", "D"}
    first_conv = next(m for m in model.networks["D"].modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 6  # input beside output
    assert type(model.networks["G"]).__name__ == "UnetGenerator"


def test_l1_decreases_over_a_few_steps():
    model = make_model(lr=0.002)
    model.configure_training()
    batch = paired_batch()
    l1 = [float(model.train_step(batch)["G_L1"]) for _ in range(10)]
    assert sum(l1[-3:]) < 0.8 * sum(l1[:3])


def test_losses_and_the_wgangp_penalty():
    model = make_model(gan_mode="wgangp")
    model.configure_training()
    losses = model.train_step(paired_batch())
    assert {"loss", "G_GAN", "G_L1", "D", "D_real", "D_fake", "gp"} <= set(losses)
    assert losses["gp"].item() > 0
    assert torch.isclose(losses["loss"], losses["G_GAN"] + losses["G_L1"])


def test_pool_of_pairs_when_asked():
    model = make_model(pool_size=2)
    model.configure_training()
    model.train_step(paired_batch(count=3))
    assert len(model.pool) == 2 and model.pool.images[0].shape[0] == 6
    assert set(model.extra_state()) == {"pool.images", "pool.count"}


def test_translate_only_the_trained_direction():
    model = make_model()
    images = torch.rand(2, 3, 45, 30)
    out = model.translate(images, "a2b")
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(UserError, match="b2a"):
        model.translate(images, "b2a")
    reverse = make_model(direction="b2a")
    assert reverse.translate(images, "b2a").shape == images.shape
    with pytest.raises(UserError):
        reverse.translate(images, "a2b")


def test_translate_is_batch_safe_with_batch_norm():
    model = make_model(dropout=False)
    images = torch.rand(3, 3, 32, 32)
    together = model.translate(images)
    alone = model.translate(images[2:])
    assert torch.allclose(together[2:], alone, atol=1e-5)
    evaluated = make_model(dropout=False, eval_mode=True)
    assert evaluated.translate(images).shape == images.shape


def test_scores_against_the_target():
    model = make_model(dropout=False)  # no dropout: the output is the same on every pass
    model.begin_scoring()
    batch = paired_batch(count=3)
    scores = model.score_batch(batch)
    assert set(scores) == {"l1", "psnr", "ssim"}
    assert all(v.shape == (3,) for v in scores.values())
    assert ((scores["ssim"] <= 1) & (scores["ssim"] >= -1)).all()
    # Each is the metric of the translation against the target, image by image.
    fake, target = model.translate(batch["A"]), batch["B"]
    torch.testing.assert_close(scores["l1"], l1_error(fake, target))
    torch.testing.assert_close(scores["psnr"], psnr(fake, target))
    torch.testing.assert_close(scores["ssim"], ssim(fake, target))
    assert scores["l1"].min() > 0 and scores["ssim"].max() < 1  # an untrained G is no copy
    summary = model.finish_scoring()
    assert set(summary) == {f"{s}_{n}" for s in ("mean", "median") for n in ("l1", "psnr", "ssim")}
    for name, values in scores.items():
        assert summary[f"mean_{name}"] == pytest.approx(float(values.mean()))
        assert summary[f"median_{name}"] == pytest.approx(float(values.median()))


def test_ssim_and_psnr_sanity():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 24)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim(x, noisy) < 1).all() and (ssim(x, noisy) > ssim(x, torch.rand_like(x))).all()
    assert psnr(x, x).tolist() == [100.0, 100.0]  # capped, never infinite
    assert psnr(x, x + 0.1).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    # A small image takes the largest odd window that fits.
    assert torch.allclose(ssim(x[..., :5, :6], x[..., :5, :6]), torch.ones(2))


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="skimage not installed")
def test_ssim_matches_scikit_image():
    import numpy as np
    from skimage.metrics import structural_similarity

    torch.manual_seed(1)
    x = torch.rand(1, 3, 40, 40, dtype=torch.float64)
    y = (x + 0.2 * torch.rand_like(x)).clamp(0, 1)
    expected = structural_similarity(
        np.moveaxis(x[0].numpy(), 0, -1),
        np.moveaxis(y[0].numpy(), 0, -1),
        channel_axis=-1,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(x, y).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.cuda
def test_pix2pix_trains_and_scores_on_cuda():
    torch.manual_seed(0)
    data = DataInfo(kind=DataKind.PAIRED, channels=3, height=SIZE, width=SIZE)
    model = Pix2PixModel(Pix2PixConfig(ngf=4, ndf=4), data, torch.device("cuda"))
    model.configure_training()
    batch = {k: v.cuda() for k, v in paired_batch().items()}
    losses = model.train_step(batch)
    assert all(v.is_cuda and torch.isfinite(v) for v in losses.values())
    assert model.score_batch(batch)["ssim"].shape == (2,)
    assert model.translate(torch.rand(1, 3, 50, 33, device="cuda")).is_cuda
