"""The translation plugin registers cyclegan and pix2pix without importing torch."""

from gentool.api import DataKind, FamilySpec
from gentool_translation import plugin
from gentool_translation.config import CycleGANConfig, Pix2PixConfig


def registered() -> dict[str, FamilySpec]:
    specs: list[FamilySpec] = []
    plugin.register_families(register=specs.append)
    return {spec.name: spec for spec in specs}


def test_registers_both_families():
    specs = registered()
    assert set(specs) == {"cyclegan", "pix2pix"}
    cyclegan, pix2pix = specs["cyclegan"], specs["pix2pix"]
    assert cyclegan.data_kind is DataKind.UNPAIRED and cyclegan.config is CycleGANConfig
    assert pix2pix.data_kind is DataKind.PAIRED and pix2pix.config is Pix2PixConfig
    for spec in specs.values():
        assert spec.capabilities == {"train", "score", "translate"}
        assert not spec.can("sample")


def test_model_classes_load():
    specs = registered()
    assert specs["cyclegan"].load_model_class().__name__ == "CycleGANModel"
    assert specs["pix2pix"].load_model_class().__name__ == "Pix2PixModel"
