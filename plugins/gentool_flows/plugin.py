"""Registers the flow families (``made``, ``maf``, ``iaf``); light: no torch at import."""

from __future__ import annotations

from collections.abc import Callable

from gentool.api import DataKind, FamilySpec, hookimpl
from gentool_flows.config import IAFConfig, MADEConfig, MAFConfig

__all__ = ["register_families"]

CAPABILITIES = frozenset({"train", "sample", "score"})
#: A flow small enough for the contract suite to train on digits in a second.
TEST_CONFIG = {"hidden_features": (16,), "num_layers": 2, "batch_size": 256}


@hookimpl
def register_families(register: Callable[[FamilySpec], None]) -> None:
    register(
        FamilySpec(
            name="made",
            summary="Gaussian MADE: one masked autoregressive layer (Germain et al. 2015)",
            config=MADEConfig,
            data_kind=DataKind.IMAGES,
            capabilities=CAPABILITIES,
            model="gentool_flows.models:MADEModel",
            details={"paper": "https://arxiv.org/abs/1502.03509"},
            test_config={"hidden_features": (16,), "batch_size": 256},
        )
    )
    register(
        FamilySpec(
            name="maf",
            summary="Masked autoregressive flow: fast density, sequential sampling (2017)",
            config=MAFConfig,
            data_kind=DataKind.IMAGES,
            capabilities=CAPABILITIES,
            model="gentool_flows.models:MAFModel",
            details={"paper": "https://arxiv.org/abs/1705.07057"},
            test_config=TEST_CONFIG,
        )
    )
    register(
        FamilySpec(
            name="iaf",
            summary="Inverse autoregressive flow: fast sampling, sequential density (2016)",
            config=IAFConfig,
            data_kind=DataKind.IMAGES,
            capabilities=CAPABILITIES,
            model="gentool_flows.models:IAFModel",
            details={"paper": "https://arxiv.org/abs/1606.04934"},
            test_config=TEST_CONFIG,
        )
    )
