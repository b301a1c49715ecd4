"""Registers the ``realnvp`` family with gentool (light: torch loads only when a model is built)."""

from __future__ import annotations

from collections.abc import Callable

from gentool.api import DataKind, FamilySpec, hookimpl

from gentool_realnvp.config import RealNVPConfig

__all__ = ["register_families"]


@hookimpl
def register_families(register: Callable[[FamilySpec], None]) -> None:
    register(
        FamilySpec(
            name="realnvp",
            summary="RealNVP: affine coupling flow (NICE's additive coupling as an option)",
            config=RealNVPConfig,
            data_kind=DataKind.IMAGES,
            capabilities=frozenset({"train", "sample", "score"}),
            # A string, so that torch and the networks load only when a command needs them.
            model="gentool_realnvp.model:RealNVPModel",
            details={
                "paper": "Dinh et al., Density estimation using Real NVP, ICLR 2017, "
                "https://arxiv.org/abs/1605.08803",
                "nice": "Dinh et al., NICE, ICLR 2015 workshop, https://arxiv.org/abs/1410.8516",
                "speed": "density and sampling are each one parallel pass per coupling",
            },
            # A model small enough for gentool's family contract suite (tests/test_contract.py).
            test_config={"layers": 2, "hidden_features": (16,), "batch_size": 256},
        )
    )
