"""The flow families' models: a MADE, MAF or IAF inside gentool's density bookkeeping."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gentool.api import DensityModel, UserError, forked_rng
from gentool_flows.features import PIXELS, FeatureSpace, check_feature_data
from gentool_flows.flow import AutoregressiveFlow
from gentool_flows.iaf import IAF
from gentool_flows.maf import MAF

if TYPE_CHECKING:
    from gentool_flows.distill import Distillation

__all__ = ["IAFModel", "MADEModel", "MAFModel"]

#: Student samples behind the KL estimate that ``gentool score`` reports for a distilled IAF.
KL_SAMPLES = 1024


class _FlowModel(DensityModel):
    """Adds the opt-in CUDA graphs, the timings ``gentool bench`` reports and, with
    ``--features BACKBONE``, a density of pooled CNN features to a flow."""

    def __init__(self, config: Any, data: Any, device: torch.device) -> None:
        self.space: FeatureSpace | None = None
        if getattr(config, "features", PIXELS) != PIXELS:
            check_feature_data(data)
            self.space = FeatureSpace(config, torch.device(device))
            config = self.space.resolved(config)  # the checkpoint holds the backbone's digest
        super().__init__(config, data, device)
        if self.space is not None:
            self.networks["standardise"] = self.space.standardiser().to(self.device)
        self.flow.cuda_graphs = bool(getattr(config, "cuda_graphs", False))

    # -- features instead of pixels: no dequantisation, no logit, no samples ---------------
    def flow_features(self) -> int:
        return self.space.dims if self.space is not None else super().flow_features()

    def feature_nll(self, images: torch.Tensor) -> torch.Tensor:
        """``-log p(features)`` per image in nats, the standardiser's log-det included."""
        z, log_det = self.networks["standardise"](self.space.pooled(self.prepare(images)))
        return -(self.flow.log_prob(z) + log_det)

    def configure_training(self) -> None:
        super().configure_training()
        if self.space is not None:  # the standardiser's scale and shift train too
            c = self.config
            self.optimizers["flow"] = torch.optim.Adam(
                self.networks.parameters(), lr=c.lr, weight_decay=c.weight_decay
            )

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        if self.space is None:
            return super().train_step(batch)
        optimizer = self.optimizers["flow"]
        optimizer.zero_grad(set_to_none=True)
        loss = self.feature_nll(batch[0]).mean()
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.networks.parameters(), self.config.grad_clip)
        optimizer.step()
        return {"loss": loss.detach()}

    def nll(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.space is None:
            return super().nll(images, generator)
        return self.feature_nll(images)

    @torch.no_grad()
    def score_batch(self, batch: Any) -> dict[str, torch.Tensor]:
        if self.space is None:
            return super().score_batch(batch)
        return {"nll": self.feature_nll(batch[0] if isinstance(batch, tuple | list) else batch)}

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        if self.space is not None:
            raise UserError(
                f"this model's flow is on {self.config.features} features, not pixels: it "
                "scores images but cannot draw them; train without --features to sample"
            )
        return super().sample(n, temperature)

    def preview(self, batch: Any) -> tuple[torch.Tensor, int] | None:
        return None if self.space is not None else super().preview(batch)

    def benchmarks(self, batch_size: int) -> dict[str, tuple[Callable[[], Any], int]]:
        """The flow's sequential direction (MAF: sampling, IAF: density), fast and plain.

        ``gentool bench`` runs these in eval and inference mode; the plain loop is the
        textbook D full MADE passes per layer that other flow libraries run.
        """
        flow: AutoregressiveFlow = self.flow
        noise = flow.noise(batch_size)
        return {
            "parallel_pass": (lambda: flow.transform(noise), batch_size),
            "sequential_fast": (lambda: flow.solve(noise), batch_size),
            "sequential_plain_loop": (lambda: flow.solve_reference(noise), batch_size),
        }


class MADEModel(_FlowModel):
    """A single Gaussian MADE density: one autoregressive layer (the ``made`` family)."""

    def build_flow(self, features: int) -> nn.Module:
        c = self.config
        return MAF(
            features,
            num_layers=1,
            hidden_features=c.hidden_features,
            order=c.order,
            batch_norm=False,
            log_scale_clamp=c.log_scale_clamp,
            activation=c.activation,
            seed=c.seed,
            scale=c.scale,
        )


class MAFModel(_FlowModel):
    """Masked autoregressive flow on images (the ``maf`` family)."""

    def build_flow(self, features: int) -> nn.Module:
        c = self.config
        return MAF(
            features,
            num_layers=c.num_layers,
            hidden_features=c.hidden_features,
            order=c.order,
            batch_norm=c.batch_norm,
            log_scale_clamp=c.log_scale_clamp,
            activation=c.activation,
            seed=c.seed,
            scale=c.scale,
        )


class IAFModel(_FlowModel):
    """Inverse autoregressive flow on images (the ``iaf`` family); its density is sequential.

    With ``teacher`` set it trains by density distillation (:mod:`gentool_flows.distill`):
    the engine's batches only set how many samples a step draws, and the validation loss
    is the KL estimate, since that, not the data, is what the student learns from.
    """

    def __init__(self, config: Any, data: Any, device: torch.device) -> None:
        super().__init__(config, data, device)
        self.distillation: Distillation | None = None
        # Per-image NLLs of student and teacher while `gentool score` runs (distilled only).
        self._compared: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._teacher_note = ""  # why scoring could not compare with the teacher

    def _load_teacher(self) -> Distillation:
        from gentool_flows.distill import Distillation, load_teacher

        c = self.config
        return Distillation(load_teacher(c.teacher, self.data, c.logit_lambda, self.device))

    def configure_training(self) -> None:
        super().configure_training()
        if self.config.teacher:
            self.distillation = self._load_teacher()

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        if self.distillation is None:
            return super().train_step(batch)
        optimizer = self.optimizers["flow"]
        optimizer.zero_grad(set_to_none=True)
        log_q, log_p = self.distillation.terms(self.flow, len(batch[0]))
        loss = (log_q - log_p).mean()
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.flow.parameters(), self.config.grad_clip)
        optimizer.step()
        # loss is the KL estimate in nats; its two terms show which side moves: log_q is the
        # student's negative entropy, log_p how much teacher mass its samples land on.
        return {
            "loss": loss.detach(),
            "log_q": log_q.detach().mean(),
            "log_p": log_p.detach().mean(),
        }

    @torch.no_grad()
    def validation_loss(self, batch: Any) -> torch.Tensor:
        if self.distillation is None:
            return super().validation_loss(batch)
        # One term per held-out image, so the engine's mean is a KL estimate; its fixed
        # validation seed gives every epoch the same noise, a fair comparison.
        return self.distillation.divergence(self.flow, len(batch[0]))

    def nll(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # The sequential inverse of an image unlike the training data can overflow float32:
        # each step may scale by up to exp(log_scale_clamp), and the steps compound. Past the
        # overflow, inf - inf and 0 * inf make NaN; the true NLL is then beyond float range,
        # so it is reported as +inf (the most anomalous score), never as NaN. Training keeps
        # NaN: there it flags a broken step, and the engine stops on it.
        nll = super().nll(images, generator)
        return nll if torch.is_grad_enabled() else torch.where(nll.isnan(), math.inf, nll)

    # -- scoring: the student's exact NLL, and the teacher's beside it when distilled ----------
    def begin_scoring(self) -> None:
        super().begin_scoring()
        if self.config.teacher and self.distillation is None:
            # Building the teacher draws its initial weights: on a fork of the RNG, so the
            # scoring noise after it is what it would be without a teacher.
            try:
                with forked_rng(None, self.device):
                    self.distillation = self._load_teacher()
            except UserError as err:  # the student scores on; the summary says why
                self._teacher_note = f"unavailable: {err}"
        self._compared = ([], []) if self.distillation is not None else None

    @torch.no_grad()
    def score_batch(self, batch: Any) -> dict[str, torch.Tensor]:
        if self._compared is None:
            return super().score_batch(batch)
        # The teacher draws its dequantisation noise from a fork of the RNG: the student's
        # scores are then those it gets without its teacher, and both score the same noisy
        # pixels, so the gap between them is not blurred by the noise.
        with forked_rng(None, self.device):
            teacher_nll = self.distillation.teacher.score_batch(batch)["nll"]
        scores = {**super().score_batch(batch), "teacher_nll": teacher_nll}
        self._compared[0].append(scores["nll"])
        self._compared[1].append(scores["teacher_nll"])
        return scores

    @torch.no_grad()
    def finish_scoring(self) -> dict[str, Any]:
        summary = super().finish_scoring()
        if not self.config.teacher:
            return summary
        summary["teacher"] = self.config.teacher
        if self._compared is None:
            summary["teacher"] += f" ({self._teacher_note})"
            return summary
        student, teacher = (torch.cat(values) for values in self._compared)
        self._compared = None
        # Held-out: how many nats per image the student loses to its teacher on the data
        # (the median too: a reverse-KL student may give a rare image almost no density,
        # an infinite NLL in float32); sampled: the divergence it was trained to shrink.
        gap = student - teacher
        summary["teacher_gap_nats"] = float(gap.mean())
        summary["teacher_gap_median_nats"] = float(gap.median())
        kl = self.distillation.divergence(self.flow, KL_SAMPLES)
        summary["kl_student_teacher_nats"] = float(kl.mean())
        return summary

    def build_flow(self, features: int) -> nn.Module:
        c = self.config
        return IAF(
            features,
            num_layers=c.num_layers,
            hidden_features=c.hidden_features,
            order=c.order,
            log_scale_clamp=c.log_scale_clamp,
            activation=c.activation,
            seed=c.seed,
            scale=c.scale,
        )
