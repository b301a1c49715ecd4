"""Density distillation: an IAF student learns a trained MAF teacher, both directions parallel.

Maximum likelihood on data needs an IAF's slow direction (the density of an outside image)
at every step. Distillation never does: the student draws reparameterised samples in one
parallel pass, ``x = f(z)`` with ``log q(x)`` known, and the teacher scores them in its own
parallel direction, so training minimises

    KL(q || p) = E_{x ~ q} [log q(x) - log p(x)]

with both networks reading forwards. The teacher is frozen; gradients reach the student's
weights through ``x`` (the reparameterisation) and through ``log q(x)``.

Both flows live in the same logit space of dequantised pixels (same shape, quantisation
levels and logit lambda, checked on loading), and the logit transform adds the same
log-Jacobian to ``log q`` and ``log p`` of a point, so the divergence in flow space equals
the divergence between the two densities of dequantised images, in nats per image.

References:
    | Parallel WaveNet: Fast High-Fidelity Speech Synthesis (van den Oord et al., 2018)
    | https://arxiv.org/abs/1711.10433
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from gentool.api import DataInfo, DensityModel, UserError, load_model
from gentool_flows.iaf import IAF

__all__ = ["Distillation", "check_teacher", "load_teacher"]


def check_teacher(teacher: DensityModel, data: DataInfo, logit_lambda: float, name: str) -> None:
    """Raise one UserError listing every way the teacher's data differs from the student's."""
    mine, theirs = data, teacher.data
    differences = []
    if theirs.shape != mine.shape:
        shapes = ("x".join(map(str, s)) for s in (theirs.shape, mine.shape))
        differences.append("images {} vs {}".format(*shapes))
    if theirs.levels != mine.levels:
        differences.append(f"{theirs.levels} vs {mine.levels} pixel levels")
    if teacher.config.logit_lambda != logit_lambda:
        differences.append(f"logit lambda {teacher.config.logit_lambda:g} vs {logit_lambda:g}")
    if differences:
        raise UserError(
            f"--teacher {name} does not describe the same data as this IAF (teacher vs "
            f"student: {'; '.join(differences)}); train the student on the teacher's data "
            "with the same --image-size, --channels and --logit-lambda"
        )


def load_teacher(
    path: str | Path, data: DataInfo, logit_lambda: float, device: torch.device
) -> DensityModel:
    """A trained density model from its checkpoint, checked against the student, frozen."""
    if not Path(path).expanduser().exists():
        raise UserError(
            f"--teacher: no such run folder or file: {path} (a relative path is read from "
            "the current folder)"
        )
    try:
        teacher = load_model(None, path, device)
    except UserError as err:  # its messages name --checkpoint, which the user did not type
        raise UserError(f"--teacher: {str(err).removeprefix('--checkpoint: ')}") from None
    if not isinstance(teacher, DensityModel):
        family = teacher.checkpoint_meta.family
        raise UserError(
            f"--teacher {path} is a {family!r} checkpoint; the teacher must be a density "
            "model such as a trained maf run"
        )
    check_teacher(teacher, data, logit_lambda, str(path))
    teacher.networks.requires_grad_(False)
    return teacher.eval()


class Distillation:
    """The reverse KL of an IAF student from a frozen density teacher, by its own samples.

    Arguments:
        teacher: a trained :class:`~gentool.api.DensityModel` (a MAF: its density is
            one parallel pass), kept in eval mode (batch norm on running averages).

    Example:
        >>> from gentool.api import DataInfo, DataKind
        >>> from gentool_flows.config import MAFConfig
        >>> from gentool_flows.models import MAFModel
        >>> info = DataInfo(DataKind.IMAGES, 1, 2, 2, levels=17)
        >>> teacher = MAFModel(MAFConfig(num_layers=2, hidden_features=(8,)), info, "cpu")
        >>> student = IAF(4, num_layers=2, hidden_features=(8,))
        >>> gap = Distillation(teacher.eval()).divergence(student, 16)
        >>> gap.shape, gap.requires_grad
        (torch.Size([16]), True)
    """

    def __init__(self, teacher: DensityModel) -> None:
        self.teacher = teacher

    def divergence(self, student: IAF, n: int) -> Tensor:
        """``log q(x) - log p(x)`` for ``n`` draws ``x ~ q``, [n]: the mean estimates KL(q || p).

        Differentiable in the student's weights when autograd is on.
        """
        log_q, log_p = self.terms(student, n)
        return log_q - log_p

    def terms(self, student: IAF, n: int) -> tuple[Tensor, Tensor]:
        """``log q(x)`` and ``log p(x)`` of ``n`` draws ``x ~ q`` (for logging both)."""
        w, log_q = student.sample_and_log_prob(n)
        return log_q, self.teacher.flow.log_prob(w)
