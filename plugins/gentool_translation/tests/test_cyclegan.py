"""CycleGAN: config from CLI words, training steps, identity loss, schedules, translation,
preview, scoring and resume state, on small procedural images."""

import math

import pytest
import torch
from safetensors.torch import load, save
from torch import nn

from gentool.api import DataInfo, DataKind, UserError
from gentool.config import build_config
from gentool_translation.config import CycleGANConfig
from gentool_translation.cyclegan import CycleGANModel

SIZE = 32
TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1}


def shapes(count: int, kind: str, seed: int, size: int = SIZE) -> torch.Tensor:
    """Coloured squares or discs on a dark background, [count, 3, size, size] in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.full((count, 3, size, size), 0.1)
    for i in range(count):
        colour = torch.rand(3, 1, 1, generator=generator) * 0.8 + 0.2
        y, x = torch.randint(size // 4, 3 * size // 4, (2,), generator=generator).tolist()
        radius = int(torch.randint(size // 8, size // 4, (1,), generator=generator))
        if kind == "square":
            mask = ((rows - y).abs() <= radius) & ((cols - x).abs() <= radius)
        else:
            mask = (rows - y) ** 2 + (cols - x) ** 2 <= radius**2
        images[i] = torch.where(mask, colour, images[i])
    return images


def unpaired_batch(count: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"A": shapes(count, "square", seed), "B": shapes(count, "disc", seed + 100)}


def make_model(channels: int = 3, **overrides) -> CycleGANModel:
    torch.manual_seed(0)
    config = CycleGANConfig(**{**TINY, **overrides})
    data = DataInfo(kind=DataKind.UNPAIRED, channels=channels, height=SIZE, width=SIZE)
    return CycleGANModel(config, data, torch.device("cpu"))


def test_the_reports_command_line_builds_the_config():
    flags = {
        "n-blocks": "6",
        "batch-size": "1",
        "lr": "0.0002",
        "beta1": "0.5",
        "lambda-cycle": "10",
        "lambda-identity": "0.5",
        "epochs": "20",
    }
    config = build_config(CycleGANConfig, flags)
    assert (config.n_blocks, config.epochs, config.lambda_cycle) == (6, 20, 10.0)
    defaults = CycleGANConfig()
    assert (defaults.batch_size, defaults.lr, defaults.beta1, defaults.pool_size) == (
        1,
        0.0002,
        0.5,
        50,
    )
    assert (defaults.generator, defaults.n_blocks, defaults.norm, defaults.gan_mode) == (
        "resnet",
        9,
        "instance",
        "lsgan",
    )
    assert (defaults.epochs, defaults.epochs_decay) == (200, 100)  # reference: 100 + 100
    assert not defaults.dropout


def test_networks_and_losses_are_named_as_the_reference():
    model = make_model()
    assert set(model.networks) == {"G_A", "G_B", "D_A", "D_B"}
    model.configure_training()
    losses = model.train_step(unpaired_batch())
    assert set(losses) == {
        "loss",
        "G_A",
        "G_B",
        "cycle_A",
        "cycle_B",
        "idt_A",
        "idt_B",
        "D_A",
        "D_B",
    }
    assert all(v.dim() == 0 and not v.requires_grad for v in losses.values())
    parts = sum(losses[k] for k in ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"))
    assert torch.isclose(losses["loss"], parts)
    adam = model.optimizers["G"].param_groups[0]
    assert adam["lr"] == 0.0002 and adam["betas"] == (0.5, 0.999)


def test_a_few_steps_lower_the_cycle_loss():
    model = make_model(lr=0.002, pool_size=4)
    model.configure_training()
    batch = unpaired_batch(count=2)
    cycle = []
    for _ in range(12):
        losses = model.train_step(batch)
        cycle.append(float(losses["cycle_A"] + losses["cycle_B"]))
    assert all(math.isfinite(c) for c in cycle)
    assert sum(cycle[-3:]) < 0.8 * sum(cycle[:3])


def test_identity_loss_is_zero_for_identity_generators():
    model = make_model()
    model.networks["G_A"] = nn.Identity()
    model.networks["G_B"] = nn.Identity()
    real_a, real_b = unpaired_batch()["A"] * 2 - 1, unpaired_batch()["B"] * 2 - 1
    losses, fake_b, _ = model.generator_losses(real_a, real_b)
    assert losses["idt_A"].item() == 0 and losses["idt_B"].item() == 0
    assert losses["cycle_A"].item() == 0 and torch.equal(fake_b, real_a)


def test_identity_loss_is_weighted_and_can_be_switched_off():
    model = make_model(lambda_identity=0.5, lambda_cycle=10.0)
    model.networks["G_A"] = nn.Identity()
    # G_B shifts every pixel by 0.2, so idt_B is 0.2 times lambda_identity * lambda_cycle.
    model.networks["G_B"] = ConstantShift(0.2)
    real_a = torch.zeros(1, 3, SIZE, SIZE)
    losses, _, _ = model.generator_losses(real_a, real_a)
    assert losses["idt_B"].item() == pytest.approx(0.2 * 0.5 * 10.0)
    assert losses["idt_A"].item() == 0

    off = make_model(lambda_identity=0.0)
    off.configure_training()
    losses = off.train_step(unpaired_batch())
    assert losses["idt_A"].item() == 0 and losses["idt_B"].item() == 0
    assert not off.uses_identity


class ConstantShift(nn.Module):
    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def test_batched_passes_compute_the_same_losses():
    # Instance norm treats each image alone, so joint passes must match separate ones.
    model = make_model(pool_size=0)
    batch = unpaired_batch()
    real_a, real_b = batch["A"] * 2 - 1, batch["B"] * 2 - 1
    model.batch_inputs = True
    joint, _, _ = model.generator_losses(real_a, real_b)
    d_joint, _ = model.gan_loss.discriminator_loss(model.networks["D_A"], real_b, real_a, True)
    model.batch_inputs = False
    separate, _, _ = model.generator_losses(real_a, real_b)
    d_separate, _ = model.gan_loss.discriminator_loss(model.networks["D_A"], real_b, real_a)
    assert all(torch.allclose(joint[k], separate[k], atol=1e-5) for k in joint)
    assert torch.allclose(d_joint, d_separate, atol=1e-6)
    # Batch norm mixes images, so it keeps the reference's separate passes.
    assert not make_model(norm="batch").batch_inputs


def test_wgangp_training_applies_the_penalty():
    model = make_model(gan_mode="wgangp")
    model.configure_training()
    losses = model.train_step(unpaired_batch())
    assert losses["gp_A"].item() > 0 and losses["gp_B"].item() > 0


def learning_rates(model: CycleGANModel) -> dict[str, float]:
    """Each optimiser's learning rate, as a fraction of the initial 2e-4."""
    return {name: opt.param_groups[0]["lr"] / 0.0002 for name, opt in model.optimizers.items()}


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_linear_schedule_is_constant_then_decays_to_zero():
    model = make_model(epochs=7, epochs_decay=4)
    model.configure_training()
    rates = []
    for epoch in range(7):
        rates.append(learning_rates(model))
        model.end_epoch(epoch)
    # The reference's lambda_rule: 1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1),
    # with n_epochs = 7 - 4 constant epochs, for G and D alike.
    expected = [1, 1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5]
    assert [r["G"] for r in rates] == pytest.approx(expected)
    assert [r["D"] for r in rates] == pytest.approx(expected)
    assert learning_rates(model) == pytest.approx({"G": 0.0, "D": 0.0})  # after 7 epochs


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_decay_longer_than_the_run_decays_throughout():
    model = make_model(epochs=2, epochs_decay=100)
    model.configure_training()
    first = model.optimizers["G"].param_groups[0]["lr"]
    model.end_epoch(0)
    # As in the reference, a decaying epoch never runs at the full rate: 2/3, then 1/3.
    assert first == pytest.approx(0.0002 * 2 / 3)
    assert model.optimizers["G"].param_groups[0]["lr"] == pytest.approx(0.0002 / 3)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # x0.1 every lr_decay_epochs (here 1), as the reference's StepLR.
        ("step", [1, 0.1, 0.01, 0.001]),
        # Half a cosine over the run's 4 epochs: (1 + cos(pi t / 4)) / 2, down to 0.
        ("cosine", [1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 - math.cos(math.pi / 4)) / 2, 0]),
    ],
)
def test_step_and_cosine_schedules_step_once_per_epoch(policy, expected):
    model = make_model(lr_policy=policy, lr_decay_epochs=1, epochs=4)
    model.configure_training()
    model.train_step(unpaired_batch())
    rates = [learning_rates(model)]
    for epoch in range(len(expected) - 1):
        model.end_epoch(epoch)
        rates.append(learning_rates(model))
    assert [r["G"] for r in rates] == pytest.approx(expected)
    assert [r["D"] for r in rates] == pytest.approx(expected)


def test_plateau_schedule_cuts_the_rate_after_five_epochs_without_progress():
    model = make_model(lr_policy="plateau", epochs=10)
    model.configure_training()
    rates = []
    for epoch in range(8):
        # A generator loss that stops improving after epoch 1: it falls 0.1% an epoch, never
        # 1% (the threshold) below its best.
        for _ in range(2):
            model.record_epoch_loss(torch.tensor(2.0 if epoch == 0 else 1.0 - 0.001 * epoch))
        model.end_epoch(epoch)
        rates.append(learning_rates(model)["G"])
    # Best at epoch 1; epochs 2-7 are six without a 1% gain, one more than the patience of 5.
    assert rates == pytest.approx([1, 1, 1, 1, 1, 1, 1, 0.2])
    assert learning_rates(model)["D"] == pytest.approx(0.2)


def test_translate_keeps_any_size_and_is_batch_safe():
    model = make_model()
    images = torch.rand(3, 3, 21, 37)
    with torch.inference_mode():
        out = model.translate(images, "a2b")
        alone = model.translate(images[1:2], "a2b")
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out[1:2], alone, atol=1e-5)
    assert model.translate(torch.rand(1, 3, 5, 3), "b2a").shape == (1, 3, 5, 3)
    # Grey input to an RGB model is repeated to three channels; RGBA loses its alpha.
    grey, rgba = torch.rand(1, 1, 16, 16), torch.rand(1, 4, 16, 16)
    assert model.translate(grey, "a2b").shape == (1, 3, 16, 16)
    assert torch.equal(model.translate(grey, "a2b"), model.translate(grey.repeat(1, 3, 1, 1)))
    assert torch.equal(model.translate(rgba, "a2b"), model.translate(rgba[:, :3], "a2b"))
    with pytest.raises(UserError, match="takes 3-channel images, got 2 channels"):
        model.translate(torch.rand(1, 2, 16, 16), "a2b")
    with pytest.raises(UserError):
        model.translate(images, "sideways")


def test_translate_with_batch_norm_leaves_the_statistics_alone():
    model = make_model(norm="batch", dropout=True)
    before = {k: v.clone() for k, v in model.networks["G_A"].state_dict().items()}
    model.translate(torch.rand(2, 3, 24, 40), "a2b")
    after = model.networks["G_A"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.networks["G_A"].training  # the mode comes back as it was


def test_unet_generator_works_for_cyclegan():
    model = make_model(generator="unet")
    assert model.translate(torch.rand(1, 3, 40, 50), "a2b").shape == (1, 3, 40, 50)


def test_bad_sizes_fail_with_a_user_error():
    with pytest.raises(UserError, match="n-layers-d"):
        CycleGANModel(
            CycleGANConfig(**TINY, discriminator="n_layers", n_layers_d=5),
            DataInfo(kind=DataKind.UNPAIRED, channels=3, height=32, width=32),
            torch.device("cpu"),
        )
    with pytest.raises(UserError, match="unet"):
        CycleGANModel(
            CycleGANConfig(**TINY, generator="unet"),
            DataInfo(kind=DataKind.UNPAIRED, channels=3, height=48, width=40),
            torch.device("cpu"),
        )


def test_preview_grid_rows():
    model = make_model()
    images, per_row = model.preview(unpaired_batch(count=2))
    assert per_row == 3 and images.shape == (12, 3, SIZE, SIZE)
    assert images.min() >= 0 and images.max() <= 1
    batch = unpaired_batch(count=2)
    assert torch.allclose(images[0], batch["A"][0], atol=1e-6)  # real A first
    assert torch.allclose(images[3], batch["B"][0], atol=1e-6)  # real B below it


def test_scores_are_per_image_and_summarised():
    model = make_model()
    model.begin_scoring()
    scores = model.score_batch(unpaired_batch(count=3))
    assert set(scores) == {"cycle_A", "cycle_B", "idt_A", "idt_B"}
    assert all(v.shape == (3,) and (v >= 0).all() for v in scores.values())
    model.score_batch(unpaired_batch(count=2, seed=5))
    summary = model.finish_scoring()
    names = ("cycle_A", "cycle_B", "idt_A", "idt_B")
    assert set(summary) == {f"{stat}_{name}" for stat in ("mean", "median") for name in names}


def test_distribution_metric_hook_is_fed():
    class Counter:
        def __init__(self):
            self.seen = 0

        def update(self, real, fake):
            assert real.shape == fake.shape
            self.seen += len(real)

        def compute(self):
            return {"count": float(self.seen)}

    model = make_model()
    model.distribution_metrics = lambda: {"a2b": Counter(), "b2a": Counter()}
    model.begin_scoring()
    model.score_batch(unpaired_batch(count=2))
    summary = model.finish_scoring()
    assert summary["count_a2b"] == 2 and summary["count_b2a"] == 2


def test_extra_state_carries_both_pools():
    model = make_model(pool_size=3)
    model.configure_training()
    model.train_step(unpaired_batch(count=2))
    state = load(save(model.extra_state()))
    fresh = make_model(pool_size=3)
    fresh.load_extra_state(state)
    assert len(fresh.pool_fake_a) == len(model.pool_fake_a) == 2
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.pool_fake_b.images, fresh.pool_fake_b.images, strict=True)
    )


def test_same_seed_same_weights():
    first, second = make_model(), make_model()
    a, b = first.networks.state_dict(), second.networks.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.cuda
def test_cyclegan_trains_and_translates_on_cuda():
    torch.manual_seed(0)
    config = CycleGANConfig(**TINY)
    data = DataInfo(kind=DataKind.UNPAIRED, channels=3, height=SIZE, width=SIZE)
    model = CycleGANModel(config, data, torch.device("cuda"))
    model.configure_training()
    batch = {k: v.cuda() for k, v in unpaired_batch().items()}
    losses = model.train_step(batch)
    assert all(v.is_cuda and torch.isfinite(v) for v in losses.values())
    assert model.translate(torch.rand(2, 3, 21, 30), "a2b").shape == (2, 3, 21, 30)
    state = model.extra_state()
    model.load_extra_state({k: v.cpu() for k, v in state.items()})
    assert model.pool_fake_a.images[0].is_cuda
    assert model.score_batch(batch)["cycle_A"].shape == (2,)
