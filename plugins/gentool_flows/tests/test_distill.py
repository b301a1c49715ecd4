"""IAF density distillation from a trained MAF teacher (``gentool train iaf --teacher RUN``).

Thresholds were measured with torch 2.14.1 on CPU, one thread, and the seeds below.
"""

import json
import shlex

import pytest
import torch
from sklearn.datasets import load_digits

from gentool import cli
from gentool.api import DataInfo, DataKind, UserError, load_model
from gentool.checkpoint import CheckpointMeta, save_model
from gentool.config import config_to_dict
from gentool_flows.config import IAFConfig, MAFConfig
from gentool_flows.distill import Distillation, load_teacher
from gentool_flows.models import IAFModel, MAFModel

INFO = DataInfo(kind=DataKind.IMAGES, channels=1, height=8, width=8, levels=17, source="digits")
TINY = "--hidden-features 64 --num-layers 2 --batch-size 100 --device cpu --quiet"


def _digits() -> torch.Tensor:
    x, _ = load_digits(return_X_y=True)
    return torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> str:
    """A small MAF trained 150 steps on digits, saved as a gentool checkpoint."""
    torch.manual_seed(0)
    config = MAFConfig(hidden_features=(64,), num_layers=3)
    model = MAFModel(config, INFO, torch.device("cpu"))
    model.configure_training()
    model.train()
    images, generator = _digits(), torch.Generator().manual_seed(0)
    for _ in range(150):
        index = torch.randint(len(images), (100,), generator=generator)
        model.train_step((images[index], torch.full((100,), -1)))
    path = tmp_path_factory.mktemp("teacher") / "model.safetensors"
    meta = CheckpointMeta("maf", "flows", "0", config_to_dict(config), INFO.to_json())
    save_model(path, model.networks.state_dict(), meta)
    return str(path)


def _kl(model: IAFModel, n: int = 512) -> float:
    torch.manual_seed(123)  # the same student noise before and after
    return model.validation_loss((torch.zeros(n, 1, 8, 8), None)).mean().item()


def test_distillation_lowers_the_kl_estimate(teacher_file):
    torch.manual_seed(0)
    config = IAFConfig(hidden_features=(64,), num_layers=3, teacher=teacher_file)
    student = IAFModel(config, INFO, torch.device("cpu"))
    student.configure_training()
    assert student.distillation is not None
    teacher = student.distillation.teacher
    assert not any(p.requires_grad for p in teacher.networks.parameters())
    assert "teacher" not in "".join(student.networks.state_dict())  # never saved with it
    before = _kl(student)
    student.train()
    for _ in range(150):
        losses = student.train_step((torch.zeros(100, 1, 8, 8), None))
        assert set(losses) == {"loss", "log_q", "log_p"}
    student.eval()
    after = _kl(student)
    # Measured: 183.4 nats before, 5.0 after 150 steps. A KL is never negative; its sample
    # mean may dip below zero only by noise.
    assert after < 0.1 * before and after > -1.0
    # The teacher's weights did not move.
    reloaded = load_model("maf", teacher_file, "cpu").networks.state_dict()
    for name, value in teacher.networks.state_dict().items():
        assert torch.equal(value, reloaded[name]), name


def test_divergence_is_log_q_minus_teacher_log_p(teacher_file):
    teacher = load_teacher(teacher_file, INFO, 1e-6, torch.device("cpu"))
    student = IAFModel(IAFConfig(hidden_features=(16,), num_layers=2), INFO, "cpu").flow
    distillation = Distillation(teacher)
    torch.manual_seed(5)
    gap = distillation.divergence(student, 8)
    torch.manual_seed(5)
    w, log_q = student.sample_and_log_prob(8)
    assert torch.allclose(gap, log_q - teacher.flow.log_prob(w))
    gap.mean().backward()  # gradients reach the student through its samples
    assert all(p.grad is not None for p in student.parameters())


@pytest.mark.parametrize(
    ("info", "logit_lambda", "message"),
    [
        (DataInfo(DataKind.IMAGES, 1, 4, 4, levels=17), 1e-6, "images 1x8x8 vs 1x4x4"),
        (DataInfo(DataKind.IMAGES, 1, 8, 8, levels=256), 1e-6, "17 vs 256 pixel levels"),
        (INFO, 0.05, "logit lambda 1e-06 vs 0.05"),
    ],
)
def test_a_mismatched_teacher_is_one_clear_error(teacher_file, info, logit_lambda, message):
    with pytest.raises(UserError, match=message) as caught:
        load_teacher(teacher_file, info, logit_lambda, torch.device("cpu"))
    assert "\n" not in str(caught.value)


def test_a_missing_teacher_is_named_as_the_teacher(tmp_path):
    with pytest.raises(UserError, match="--teacher: no such run folder or file"):
        load_teacher(tmp_path / "gone", INFO, 1e-6, torch.device("cpu"))


def _cli(capsys, command: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(shlex.split(command))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_distillation_through_the_cli(tmp_path, capsys):
    teacher, student = tmp_path / "maf", tmp_path / "iaf"
    code, _, err = _cli(capsys, f"train maf --data digits --out {teacher} --epochs 2 {TINY}")
    assert code == 0, err
    code, out, err = _cli(
        capsys, f"train iaf --data digits --out {student} --epochs 2 --teacher {teacher} {TINY}"
    )
    assert code == 0, err
    # Validation (and early stopping) follows the KL estimate, in nats.
    assert json.loads(out.strip().splitlines()[-1])["best_validation_loss"] > 0
    records = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert {"loss", "log_q", "log_p"} <= set(epochs[-1])

    code, out, err = _cli(capsys, f"score iaf -c {student} --data digits --json --device cpu")
    assert code == 0, err
    scores = json.loads(out)
    assert scores["teacher"] == str(teacher)
    gap = scores["mean_nll"] - scores["mean_teacher_nll"]
    assert scores["teacher_gap_nats"] == pytest.approx(gap, abs=1e-3)
    assert "teacher_gap_median_nats" in scores
    assert scores["kl_student_teacher_nats"] > 0

    # The student's data must be the teacher's: one line, exit status 2.
    code, _, err = _cli(
        capsys,
        f"train iaf --data digits --image-size 4 --out {tmp_path / 'bad'} --epochs 1 "
        f"--teacher {teacher} {TINY}",
    )
    assert code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "--teacher" in line and "1x8x8 vs 1x4x4" in line


def test_the_teacher_beside_the_student_leaves_its_scores_alone(teacher_file, tmp_path):
    """A distilled student's scores are the same with and without its teacher, and the
    teacher's NLL beside them is the one the teacher gets on its own: loading and running
    the teacher draw nothing from the scoring noise."""
    from gentool.api import seed_everything
    from gentool.scoring import score_source

    images = [(image, -1) for image in _digits()[:40]]
    config = IAFConfig(hidden_features=(16,), num_layers=2, teacher=teacher_file)
    student = IAFModel(config, INFO, torch.device("cpu"))

    def score(model) -> dict:
        seed_everything(0)
        rows = score_source(model, images, None, 16, torch.device("cpu")).rows
        return {key: [row[key] for row in rows] for key in rows[0]}

    with_teacher = score(student)
    student.distillation = None
    student.config.teacher = str(tmp_path / "moved")  # a teacher that cannot be read
    alone = score(student)
    assert "teacher_nll" not in alone
    assert with_teacher["nll"] == alone["nll"]
    teacher = load_model("maf", teacher_file, "cpu")
    assert with_teacher["teacher_nll"] == score(teacher)["nll"]


def test_an_unreadable_teacher_is_named_as_the_teacher(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match=r"^--teacher: .*run is a folder without model"):
        load_teacher(tmp_path / "run", INFO, 1e-6, torch.device("cpu"))
