"""FID and KID: the metrics against closed forms on Gaussian features, the Inception feature
extractor (random weights, never downloaded) and how scoring reports them, or says why not."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from gentool.cli import main
from gentool.data.base import DataInfo
from gentool.family import DataKind
from gentool.metrics import fid
from gentool.metrics.fid import (
    FID_NETWORK,
    FeatureDistance,
    InceptionFeatures,
    frechet_distance,
    gaussian_statistics,
    kernel_inception_distance,
    sqrtm_psd,
)
from gentool.scoring import score_source
from gentool_translation.config import CycleGANConfig, Pix2PixConfig
from gentool_translation.cyclegan import CycleGANModel
from gentool_translation.pix2pix import Pix2PixModel

SIZE = 32
TINY = {"ngf": 4, "ndf": 4}


def random_covariance(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


def gaussian_samples(mean: torch.Tensor, cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    return mean + z @ torch.linalg.cholesky(cov).T


# -- FID on features ------------------------------------------------------------------------------
def test_sqrtm_psd_squares_back_even_when_singular():
    cov = random_covariance(6, 0)
    root = sqrtm_psd(cov)
    torch.testing.assert_close(root @ root, cov)
    v = torch.randn(8, 3, dtype=torch.float64)
    singular = v @ v.T  # rank 3 of 8
    root = sqrtm_psd(singular)
    torch.testing.assert_close(root @ root, singular, atol=1e-10, rtol=1e-8)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    m1, m2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    v1, v2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float(((m1 - m2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())
    assert frechet_distance(m1, torch.diag(v1), m2, torch.diag(v2)) == pytest.approx(expected)


def test_frechet_distance_of_non_commuting_2d_gaussians_is_the_closed_form():
    # For 2x2 matrices tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)).
    s1 = torch.tensor([[2.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[0.5, -0.3], [-0.3, 3.0]], dtype=torch.float64)
    m1, m2 = torch.tensor([0.3, -1.0]).double(), torch.tensor([-0.2, 0.4]).double()
    trace_root = math.sqrt(
        float(torch.trace(s1 @ s2)) + 2 * math.sqrt(float(torch.det(s1) * torch.det(s2)))
    )
    expected = float(((m1 - m2) ** 2).sum() + torch.trace(s1) + torch.trace(s2)) - 2 * trace_root
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_in_higher_dimensions():
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = random_covariance(20, 1), random_covariance(20, 2)
    m1, m2 = torch.zeros(20), torch.full((20,), 0.1)
    root = linalg.sqrtm((s1 @ s2).numpy()).real
    expected = float(((m1 - m2) ** 2).sum() + torch.trace(s1 + s2)) - 2 * float(root.trace())
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_gaussian_samples_approaches_the_analytic_value():
    dim = 4
    m1, m2 = torch.zeros(dim, dtype=torch.float64), torch.linspace(-1, 1, dim, dtype=torch.float64)
    s1, s2 = random_covariance(dim, 3), random_covariance(dim, 4)
    analytic = frechet_distance(m1, s1, m2, s2)
    x, y = gaussian_samples(m1, s1, 50_000, 5), gaussian_samples(m2, s2, 50_000, 6)
    sampled = frechet_distance(*gaussian_statistics(x), *gaussian_statistics(y))
    assert analytic > 1
    assert sampled == pytest.approx(analytic, rel=0.02)


@pytest.mark.parametrize("count", [300, 50])  # more and fewer images than feature dimensions
def test_fid_of_a_set_with_itself_is_zero(count):
    features = torch.randn(count, 128, generator=torch.Generator().manual_seed(count)).exp()
    stats = gaussian_statistics(features)
    assert frechet_distance(*stats, *stats) < 1e-8 * float(torch.trace(stats[1]))


# -- KID on features ------------------------------------------------------------------------------
def cubic_kernel_mmd2(m1: torch.Tensor, s1: torch.Tensor, m2: torch.Tensor, s2: torch.Tensor):
    """The population MMD^2 of the kernel (x.y/d + 1)^3 between two Gaussians.

    The kernel is <phi(x), phi(y)> with phi = (x^(x3)/d^(3/2), sqrt(3) x^(x2)/d, sqrt(3/d) x,
    1), so MMD^2 = |E x^3 - E y^3|^2 / d^3 + 3 |E x^2 - E y^2|^2 / d^2 + 3 |E x - E y|^2 / d
    with the Gaussian moment tensors E x^2 = mm + S, E x^3 = mmm + 3 sym(m S).
    """
    d = len(m1)

    def moments(m, s):
        second = torch.outer(m, m) + s
        third = torch.einsum("i,j,k->ijk", m, m, m)
        third = third + (
            torch.einsum("i,jk->ijk", m, s)
            + torch.einsum("j,ik->ijk", m, s)
            + torch.einsum("k,ij->ijk", m, s)
        )
        return m, second, third

    a, b = moments(m1, s1), moments(m2, s2)
    return float(
        ((a[2] - b[2]) ** 2).sum() / d**3
        + 3 * ((a[1] - b[1]) ** 2).sum() / d**2
        + 3 * ((a[0] - b[0]) ** 2).sum() / d
    )


def test_kid_of_gaussian_samples_approaches_the_analytic_value():
    dim = 2
    m1, m2 = torch.tensor([0.0, 0.5]).double(), torch.tensor([0.4, -0.3]).double()
    s1, s2 = 0.3 * random_covariance(dim, 7), 0.3 * random_covariance(dim, 8)
    analytic = cubic_kernel_mmd2(m1, s1, m2, s2)
    x, y = gaussian_samples(m1, s1, 2000, 9), gaussian_samples(m2, s2, 2000, 10)
    result = kernel_inception_distance(x, y)
    assert result["kid_subset_size"] == 1000
    assert analytic > 1
    # The spread of the estimate at this size is about 4% of the value.
    assert result["kid"] == pytest.approx(analytic, rel=0.1)


def test_kid_from_whole_kernel_matrices_equals_kid_per_subset(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 8, generator=g).double(), torch.randn(60, 8, generator=g).double()
    whole = kernel_inception_distance(x, y + 0.2, subsets=7)
    monkeypatch.setattr(fid, "_WHOLE_GRAM_LIMIT", 0)
    per_subset = kernel_inception_distance(x, y + 0.2, subsets=7)
    assert whole == pytest.approx(per_subset, rel=1e-12)


def test_kid_is_zero_for_the_same_distribution_and_positive_for_different_ones():
    dim = 16
    mean, cov = torch.zeros(dim, dtype=torch.float64), random_covariance(dim, 11)
    x, y = gaussian_samples(mean, cov, 1000, 12), gaussian_samples(mean, cov, 1000, 13)
    same = kernel_inception_distance(x, y, subsets=50)
    assert same["kid_subset_size"] == 500
    assert abs(same["kid"]) < 3 * same["kid_std"] + 1e-3
    shifted = kernel_inception_distance(x, y + 0.5, subsets=50)
    assert shifted["kid"] > 10 * same["kid_std"] and shifted["kid"] > 0


def test_kid_on_small_sets_uses_half_the_set_so_subsets_differ():
    x, y = torch.randn(120, 8).double(), torch.randn(140, 8).double() + 1
    result = kernel_inception_distance(x, y)
    assert result["kid_subset_size"] == 60
    assert result["kid_std"] > 0
    with pytest.raises(ValueError, match="at least four"):
        kernel_inception_distance(x[:3], y)


def test_feature_distance_accumulates_batches():
    class Flatten(nn.Module):
        def forward(self, images):
            return images.flatten(1)

    metric = FeatureDistance(Flatten(), chunk=3)
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(20, 1, 2, 2, generator=g), torch.rand(20, 1, 2, 2, generator=g)
    for start in range(0, 20, 7):
        metric.update(real[start : start + 7], fake[start : start + 7])
    result = metric.compute()
    direct = frechet_distance(
        *gaussian_statistics(real.flatten(1)), *gaussian_statistics(fake.flatten(1))
    )
    assert result["fid"] == pytest.approx(direct)
    assert (result["fid_real_images"], result["fid_fake_images"]) == (20, 20)
    assert metric.network == FID_NETWORK


# -- the Inception network, never downloaded ------------------------------------------------------
@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub folder, so no cached or downloaded weights are ever used."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv(fid.DOWNLOAD_ENV, raising=False)
    monkeypatch.delenv(fid.ENABLE_ENV, raising=False)
    return tmp_path


def test_inception_features_shapes_and_loading_from_the_hub_cache(hub_dir):
    torch.manual_seed(0)
    random_net = InceptionFeatures(pretrained=False)
    images = torch.rand(2, 3, 40, 56)
    features = random_net(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert random_net(torch.rand(1, 1, 299, 299)).shape == (1, 2048)  # grey, no resize
    with pytest.raises(FileNotFoundError):
        InceptionFeatures(pretrained=True)
    # A weights file in the cache (here the random network's, with the torchvision file's
    # name) is what the pretrained extractor loads, without asking the network.
    path = fid.inception_weights_path()
    assert path.parent == hub_dir / "checkpoints"
    assert path.name.startswith("inception_v3_google-")
    path.parent.mkdir()
    # Laid out as torchvision's file: with the auxiliary classifier and the logits layer
    # (not used for features), and, like that 2017 file, without num_batches_tracked.
    state = {k: v for k, v in random_net.net.state_dict().items() if "num_batches_tracked" not in k}
    state |= {"AuxLogits.fc.weight": torch.zeros(1000, 768), "fc.weight": torch.zeros(1000, 2048)}
    torch.save(state, path)
    loaded = InceptionFeatures(pretrained=True)
    torch.testing.assert_close(loaded(images), features)
    assert not loaded.training and not loaded.train().training
    # A file that misses layers is refused, not half loaded.
    torch.save({k: v for k, v in state.items() if not k.startswith("Mixed_7c")}, path)
    with pytest.raises(RuntimeError):
        InceptionFeatures(pretrained=True)


class _RunsCode:
    """Unpickling this calls a function: what a hostile weights file would do."""

    def __reduce__(self):
        return (Path.touch, (Path(os.environ["GENTOOL_TEST_MARKER"]),))


def test_a_weights_file_that_holds_code_is_refused_without_running_it(
    hub_dir, tmp_path, monkeypatch
):
    marker = tmp_path / "ran"
    monkeypatch.setenv("GENTOOL_TEST_MARKER", str(marker))
    path = fid.inception_weights_path()
    path.parent.mkdir(parents=True)
    torch.save({"Conv2d_1a_3x3.conv.weight": _RunsCode()}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        InceptionFeatures(pretrained=True)
    assert not marker.exists()


def cyclegan(channels: int = 3) -> CycleGANModel:
    torch.manual_seed(0)
    data = DataInfo(kind=DataKind.UNPAIRED, channels=channels, height=SIZE, width=SIZE)
    return CycleGANModel(CycleGANConfig(**TINY, n_blocks=1), data, torch.device("cpu"))


def unaligned_items(n_a: int, n_b: int) -> list[dict]:
    """An unaligned test split as the data layer builds it: max(n_a, n_b) items, the smaller
    domain repeated."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(n_a, 3, SIZE, SIZE, generator=g), torch.rand(n_b, 3, SIZE, SIZE, generator=g)
    return [
        {"A": a[i % n_a], "B": b[i % n_b], "A_path": f"a{i % n_a}", "B_path": f"b{i % n_b}"}
        for i in range(max(n_a, n_b))
    ]


def test_scoring_without_the_weights_says_so_in_one_line_and_reports_the_rest(hub_dir, capsys):
    result = score_source(cyclegan(), unaligned_items(5, 6), None, 4, torch.device("cpu"))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "FID" in line]
    assert len(lines) == 1
    assert "Inception-v3 weights are not in" in lines[0] and fid.DOWNLOAD_ENV in lines[0]
    assert result.summary["images"] == 6
    assert {"mean_cycle_A", "mean_cycle_B", "mean_idt_A", "mean_idt_B"} <= set(result.summary)
    assert not any(key.startswith(("fid", "kid")) for key in result.summary)


@pytest.mark.parametrize(("content", "error"), [(b"junk\n", "KeyError: "), (b"", "EOFError;")])
def test_a_damaged_weights_file_is_named_with_what_to_do(hub_dir, capsys, content, error):
    path = fid.inception_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)  # a partial copy, or another file under the weights' name
    assert fid.fid_kid_metrics(("a2b",), torch.device("cpu")) == {}
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"FID/KID skipped: cannot load the Inception-v3 weights ({path}): ")
    assert error in line and f"delete it and fetch it again with {fid.DOWNLOAD_ENV}=1" in line


def test_fid_can_be_switched_off(hub_dir, monkeypatch, capsys):
    monkeypatch.setenv(fid.ENABLE_ENV, "0")
    assert fid.fid_kid_metrics(("a2b",), torch.device("cpu")) == {}
    assert capsys.readouterr().err == ""


class PixelMeans(nn.Module):
    """A cheap stand-in for Inception: per-channel means and spreads of a 4x4 grid."""

    def __init__(self, pretrained: bool = True, download: bool = False) -> None:
        super().__init__()

    def forward(self, images):
        pooled = nn.functional.adaptive_avg_pool2d(images.float(), 4).flatten(1)
        return torch.cat([pooled, pooled**2], 1)


@pytest.fixture
def cached_stand_in(hub_dir, monkeypatch):
    """Weights 'in the cache' and a cheap network in Inception's place."""
    path = fid.inception_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    monkeypatch.setattr(fid, "InceptionFeatures", PixelMeans)


def test_cyclegan_scores_count_each_image_once_and_report_fid_and_kid_per_direction(
    cached_stand_in,
):
    model, items = cyclegan(), unaligned_items(5, 9)
    result = score_source(model, items, None, 4, torch.device("cpu"))
    summary = result.summary
    assert summary["fid_network"] == FID_NETWORK
    # The values are those of the stand-in's features of each distinct image, in file order.
    a = torch.stack([item["A"] for item in items[:5]])
    b = torch.stack([item["B"] for item in items])
    features = PixelMeans()
    for direction, real, fake in (
        ("a2b", b, model.translate(a, "a2b")),
        ("b2a", a, model.translate(b, "b2a")),
    ):
        real, fake = features(real), features(fake)
        fid_value = frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))
        assert fid_value > 0
        assert summary[f"fid_{direction}"] == pytest.approx(fid_value, rel=1e-4)
        kid = kernel_inception_distance(real, fake)
        assert summary[f"kid_{direction}"] == pytest.approx(kid["kid"], rel=1e-3, abs=1e-9)
        assert summary[f"kid_std_{direction}"] == pytest.approx(kid["kid_std"], rel=1e-3)
        assert summary[f"kid_subset_size_{direction}"] == kid["kid_subset_size"] == 2
    # The 5 A images repeat to 9 items; FID sees each file once.
    assert (summary["fid_real_images_a2b"], summary["fid_fake_images_a2b"]) == (9, 5)
    assert (summary["fid_real_images_b2a"], summary["fid_fake_images_b2a"]) == (5, 9)
    # The per-image rows keep all 9 items; the means count each of the 5 A images once.
    assert len(result.rows) == 9
    once = sum(row["cycle_A"] for row in result.rows[:5]) / 5
    assert summary["mean_cycle_A"] == pytest.approx(once)
    assert summary["mean_cycle_B"] == pytest.approx(sum(row["cycle_B"] for row in result.rows) / 9)


def test_pix2pix_labels_fid_with_its_trained_direction(cached_stand_in):
    torch.manual_seed(0)
    data = DataInfo(
        kind=DataKind.PAIRED,
        channels=3,
        height=SIZE,
        width=SIZE,
        preprocessing={"direction": "b2a"},
    )
    model = Pix2PixModel(Pix2PixConfig(**TINY), data, torch.device("cpu"))
    items = [
        {"A": torch.rand(3, SIZE, SIZE), "B": torch.rand(3, SIZE, SIZE), "A_path": f"{i}.jpg"}
        for i in range(6)
    ]
    for item in items:
        item["B_path"] = item["A_path"]
    summary = score_source(model, items, None, 4, torch.device("cpu")).summary
    assert "fid_b2a" in summary and "fid_a2b" not in summary
    assert summary["fid_real_images_b2a"] == 6
    assert {"mean_l1", "mean_psnr", "mean_ssim"} <= set(summary)


def test_a_plain_image_folder_is_refused_with_one_clear_error():
    from gentool.errors import UserError

    model = cyclegan()
    with pytest.raises(UserError, match="use --data"):
        model.score_batch((torch.rand(2, 3, SIZE, SIZE), torch.zeros(2, dtype=torch.long)))


def test_score_batch_outside_a_scoring_pass_loads_no_network(cached_stand_in, capsys):
    # gentool bench times score_batch alone: no Inception pass, no FID message.
    model = cyclegan()
    model.score_batch({"A": torch.rand(2, 3, SIZE, SIZE), "B": torch.rand(2, 3, SIZE, SIZE)})
    assert model.finish_scoring().keys() >= {"mean_cycle_A"}
    assert "fid_network" not in model.finish_scoring()
    assert capsys.readouterr().err == ""


def test_the_score_command_without_the_weights_reports_the_rest(hub_dir, tmp_path, capsys):
    """End to end through the CLI: train a tiny CycleGAN on an A/B folder, score it."""
    data = tmp_path / "shapes"
    for split in ("trainA", "trainB", "testA", "testB"):
        (data / split).mkdir(parents=True)
        g = torch.Generator().manual_seed(len(split) + split.endswith("B"))
        for i in range(3 if split.endswith("A") else 4):
            pixels = (torch.rand(SIZE, SIZE, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(data / split / f"{i}.png")
    run = tmp_path / "run"
    train = ["train", "cyclegan", "--data", str(data), "--out", str(run), "--quiet"]
    tiny = ["--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--image-size", str(SIZE)]
    assert main([*train, *tiny, "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["score", "cyclegan", "-c", str(run), "--data", str(data), "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["images"] == 4 and "mean_cycle_A" in summary and "fid_a2b" not in summary
    fid_lines = [line for line in err.splitlines() if "FID" in line]
    assert len(fid_lines) == 1 and fid_lines[0].startswith("FID/KID skipped")
