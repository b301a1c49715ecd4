"""Plugins reach gentool only through ``gentool.api``: the built-ins as a third party must.

The check (:func:`gentool.testing.private_gentool_uses`) is public, so a plugin's own tests
run it too; here it runs over the built-in plugins and the example package, doctests
included.
"""

from pathlib import Path

import pytest

from gentool.testing import private_gentool_uses, private_uses_in

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {
    "gentool_anomaly": ROOT / "plugins" / "gentool_anomaly",
    "gentool_flows": ROOT / "plugins" / "gentool_flows",
    "gentool_translation": ROOT / "plugins" / "gentool_translation",
    "gentool_realnvp": ROOT / "examples" / "gentool-realnvp" / "src",
}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_a_plugin_imports_only_the_public_api(name):
    folder = PLUGINS[name]
    assert len(list(folder.rglob("*.py"))) >= 5  # the plugin's modules, not an empty glob
    assert private_uses_in(folder) == {}


@pytest.mark.parametrize(
    "source",
    [
        "from gentool.training import fit",
        "import gentool.registry",
        "from gentool import training",
        "import gentool\ngentool.checkpoint.save_model()",
        "from gentool.api import Trainer",
        "importlib.import_module('gentool.data.digits')",
        "from gentool.density import DensityModel",
        "def f():\n    '''\n    >>> from gentool.family import DataKind\n    '''\n",
        "'''Example:\n    >>> def g():\n    ...     from gentool.loading import load_model\n'''",
    ],
)
def test_the_check_catches_private_uses(source):
    assert private_gentool_uses(source)


def test_the_check_allows_the_public_api():
    source = "\n".join(
        [
            "import gentool",
            "import gentool.api",
            "from gentool import hookimpl",
            "from gentool.api import DensityModel, FamilySpec, option",
            'model = "gentool_realnvp.model:RealNVPModel"',
            "gentool.hookimpl",
            "'''>>> from gentool.api import DataKind'''",
            "'text with >>> in it that is no doctest\\n  >>> x'",
        ]
    )
    assert private_gentool_uses(source) == []
