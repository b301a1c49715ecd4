"""A plugin author's mistakes in a FamilySpec are one line naming the family, not a traceback
later in ``train``: the config class, its defaults, the model string and the model class."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from gentool.api import DataKind, FamilySpec, Model, TrainConfig, UserError, option
from gentool.registry import PluginInfo, Registry


@dataclass
class GoodConfig(TrainConfig):
    width: int = option(3, "width", minimum=1)


@dataclass
class NoBase:  # forgot to subclass TrainConfig: train would crash on config.seed
    width: int = option(3, "width")


class NoDecorator(TrainConfig):  # forgot @dataclass: --width would silently not exist
    width: int = option(3, "width")


@dataclass
class BadDefault(TrainConfig):
    width: int = option("three", "width")


@dataclass
class BelowMinimum(TrainConfig):
    width: int = option(0, "width", minimum=1)


@dataclass
class NotAChoice(TrainConfig):
    act: str = option("gelu", "nonlinearity", choices=("relu", "tanh"))


def spec(config=GoodConfig, model="gentool_vae_nowhere:Model", capabilities=("train",)):
    return FamilySpec(
        name="fam",
        summary="a family",
        config=config,
        data_kind=DataKind.IMAGES,
        capabilities=frozenset(capabilities),
        model=model,
        plugin="p",
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (NoBase, "subclassing gentool.api.TrainConfig"),
        (GoodConfig(), "subclassing gentool.api.TrainConfig"),  # an instance, not the class
        (NoDecorator, "needs the @dataclass decorator (without it, these fields are not options: "
                      "width)"),
        (BadDefault, "BadDefault.width: bad default (--width: 'three' is not a valid int)"),
        (BelowMinimum, "BelowMinimum.width: bad default (--width: 0 is below the minimum 1)"),
        (NotAChoice, "NotAChoice.act: bad default (--act: 'gelu' is not one of relu, tanh)"),
    ],
)  # fmt: skip
def test_a_bad_config_is_one_line_naming_the_family(config, message):
    with pytest.raises(TypeError) as err:
        spec(config)
    assert str(err.value).startswith("family 'fam': ")
    assert message in str(err.value)


def test_the_registry_records_it_against_the_plugin():
    import types

    from gentool.api import hookimpl

    module = types.ModuleType("bad_plugin")

    @hookimpl
    def register_families(register):
        register(spec(NoBase))

    module.register_families = register_families
    info = PluginInfo("bad", "gentool-bad", "0.1.0", builtin=False)
    Registry().add_plugin(module, info)
    assert "family 'fam': config must be a dataclass class subclassing" in info.error


@pytest.mark.parametrize("model", ["gentool_vae.model.VAEModel", ":VAEModel", "gentool_vae:"])
def test_a_model_string_without_module_and_class_is_rejected(model):
    with pytest.raises(ValueError, match="is not a 'module:Class' string"):
        spec(model=model)


class Sampler(Model):
    def __init__(self, config, data, device) -> None:
        super().__init__(config, data, device)
        self.networks["linear"] = torch.nn.Linear(1, 1)

    def sample(self, n, temperature=1.0):
        return torch.zeros(n, 1, 8, 8)


class NotAModel:
    pass


def test_a_model_that_lacks_a_promised_method_is_one_line():
    with pytest.raises(UserError) as err:
        spec(model=Sampler, capabilities=("train", "sample", "score")).load_model_class()
    assert str(err.value) == (
        "family 'fam' (plugin p): Sampler lacks score_batch, configure_training, train_step, "
        "which its capabilities sample, score, train promise"
    )
    assert spec(model=Sampler, capabilities=("sample",)).load_model_class() is Sampler


def test_a_model_that_is_not_a_model_is_one_line():
    with pytest.raises(UserError, match=r"family 'fam' \(plugin p\): model .*NotAModel.* is not"):
        spec(model=f"{__name__}:NotAModel", capabilities=()).load_model_class()


def test_every_built_in_family_passes_the_checks(monkeypatch):
    monkeypatch.setenv("GENTOOL_LOAD_PLUGINS", "")
    for family in Registry().load_entry_points().families.values():
        assert family.load_model_class()


@pytest.mark.parametrize(
    ("test_config", "message"),
    [
        ({"depth": 2}, "test_config: unknown hyperparameter 'depth'"),
        ({"width": 0}, "test_config: --width: 0 is below the minimum 1"),
    ],
)
def test_a_test_config_the_config_refuses_is_one_line(test_config, message):
    """The contract suite would fail on it much later, with a worse message."""
    with pytest.raises(TypeError, match=message):
        FamilySpec(
            "toy", "t", GoodConfig, DataKind.IMAGES, {"train"}, Model, test_config=test_config
        )
