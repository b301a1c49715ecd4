"""The flows plugin registers made, maf and iaf without importing torch; models build flows."""

import pytest
import torch

from gentool.api import DataInfo, DataKind, DensityModel, FamilySpec, UserError
from gentool.config import build_config, config_fields
from gentool_flows import plugin
from gentool_flows.batchnorm import BatchNorm
from gentool_flows.config import IAFConfig, MADEConfig, MAFConfig
from gentool_flows.iaf import IAF
from gentool_flows.maf import MAF

INFO = DataInfo(kind=DataKind.IMAGES, channels=1, height=4, width=4, levels=17)


def registered() -> dict[str, FamilySpec]:
    specs: list[FamilySpec] = []
    plugin.register_families(register=specs.append)
    return {spec.name: spec for spec in specs}


def test_registers_three_density_families():
    specs = registered()
    assert set(specs) == {"made", "maf", "iaf"}
    configs = {"made": MADEConfig, "maf": MAFConfig, "iaf": IAFConfig}
    for name, spec in specs.items():
        assert spec.data_kind is DataKind.IMAGES
        assert spec.capabilities == {"train", "sample", "score"}
        assert spec.config is configs[name]
        model_class = spec.load_model_class()
        assert issubclass(model_class, DensityModel)
        assert (
            model_class.__name__
            == {"made": "MADEModel", "maf": "MAFModel", "iaf": "IAFModel"}[name]
        )


def test_config_defaults_and_parsing():
    maf = MAFConfig()
    assert (maf.num_layers, maf.hidden_features, maf.batch_norm) == (5, (1024,), True)
    assert (maf.order, maf.log_scale_clamp, maf.activation) == ("natural", 5.0, "relu")
    assert not hasattr(IAFConfig(), "batch_norm") and not hasattr(MADEConfig(), "num_layers")
    for config_class in (MADEConfig, MAFConfig, IAFConfig):
        assert all(f.help for f in config_fields(config_class))
    parsed = build_config(MAFConfig, {"hidden-features": "64,64", "order": "random"})
    assert parsed.hidden_features == (64, 64) and parsed.order == "random"
    with pytest.raises(UserError, match="order"):
        build_config(MAFConfig, {"order": "sideways"})
    with pytest.raises(UserError, match="minimum"):
        build_config(IAFConfig, {"log-scale-clamp": "-1"})


def test_models_build_their_flows():
    specs = registered()
    made = specs["made"].load_model_class()(MADEConfig(hidden_features=(8,)), INFO, "cpu")
    assert isinstance(made.flow, MAF) and len(made.flow.layers) == 1
    maf_config = MAFConfig(hidden_features=(8,), num_layers=3, order="random", cuda_graphs=True)
    maf = specs["maf"].load_model_class()(maf_config, INFO, "cpu")
    assert isinstance(maf.flow, MAF) and maf.flow.cuda_graphs
    assert sum(isinstance(layer, BatchNorm) for layer in maf.flow.layers) == 2
    assert maf.flow.features == 16
    iaf = specs["iaf"].load_model_class()(
        IAFConfig(hidden_features=(8,), num_layers=2), INFO, "cpu"
    )
    assert isinstance(iaf.flow, IAF) and len(iaf.flow.layers) == 2


def test_bench_operations_run():
    model = registered()["maf"].load_model_class()(
        MAFConfig(hidden_features=(8,), num_layers=2), INFO, "cpu"
    )
    operations = model.benchmarks(4)
    assert set(operations) == {"parallel_pass", "sequential_fast", "sequential_plain_loop"}
    model.eval()
    with torch.inference_mode():
        for fn, items in operations.values():
            fn()
            assert items == 4


def test_a_checkpoint_that_does_not_fit_names_the_tensor(tmp_path):
    import dataclasses

    from gentool.api import load_model
    from gentool.checkpoint import CheckpointMeta, save_model

    spec = registered()["maf"]
    config = MAFConfig(hidden_features=(16,), num_layers=2)
    model = spec.load_model_class()(config, INFO, torch.device("cpu"))
    meta = CheckpointMeta(
        family="maf",
        plugin="flows",
        plugin_version="0.1.0",
        config=dataclasses.asdict(dataclasses.replace(config, hidden_features=(32,))),
        data=INFO.to_json(),
    )
    path = tmp_path / "model.safetensors"
    save_model(path, model.networks.state_dict(), meta)
    with pytest.raises(UserError) as caught:
        load_model(spec, path, "cpu")
    message = str(caught.value)
    assert "\n" not in message and "does not fit the 'maf' networks" in message
    assert "of another shape" in message and "file [16, 16], model [32, 16]" in message
    # and a file with the right config loads
    meta.config = dataclasses.asdict(config)
    save_model(path, model.networks.state_dict(), meta)
    assert load_model(spec, path, "cpu").networks is not None
