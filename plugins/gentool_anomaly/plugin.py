"""Registers the feature-flow family ``fastflow`` (light: torch loads only when a model is made)."""

from __future__ import annotations

from collections.abc import Callable

from gentool.api import DataKind, FamilySpec, hookimpl
from gentool_anomaly.config import FastFlowConfig

__all__ = ["register_families"]


@hookimpl
def register_families(register: Callable[[FamilySpec], None]) -> None:
    register(
        FamilySpec(
            name="fastflow",
            summary="FastFlow: 2D flows over a frozen CNN's features, with anomaly maps (2021)",
            config=FastFlowConfig,
            data_kind=DataKind.IMAGES,
            capabilities=frozenset({"train", "score"}),
            model="gentool_anomaly.fastflow:FastFlowModel",
            details={
                "paper": "Yu et al., FastFlow, https://arxiv.org/abs/2111.07677",
                "scores": "map_max (the anomaly map's maximum: the image score), nll, and "
                "with masks pixel AUROC and AUPRO",
            },
            # MVTec AD's usual 256 px, RGB for the ImageNet backbone.
            data_defaults={"image_size": 256, "channels": 3},
            test_config={
                "backbone_weights": "none",
                "stages": ("layer1", "layer2"),
                "flow_steps": 2,
                "hidden_ratio": 0.25,
                "batch_size": 32,
            },
            test_data=("defects", {"image_size": 64}),
        )
    )
