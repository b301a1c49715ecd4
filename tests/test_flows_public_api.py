"""The built-in flows plugin imports only gentool's public API, exactly as a third party must."""

from __future__ import annotations

import ast
import doctest
import importlib.util
from collections.abc import Callable
from pathlib import Path

FLOWS = Path(__file__).resolve().parents[1] / "plugins" / "gentool_flows"


def _load_check() -> Callable[[str], list[str]]:
    """The example plugin's own check, loaded by file path: tests/ is no package, and with
    ``--import-mode=importlib`` ``from tests.test_example_plugin import ...`` would depend on
    where pytest was started."""
    path = Path(__file__).with_name("test_example_plugin.py")
    spec = importlib.util.spec_from_file_location("gentool_tests_example_plugin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.private_gentool_uses


private_gentool_uses = _load_check()


def doctest_source(source: str) -> str:
    """The code of every doctest in ``source``'s docstrings, as one module.

    The check reads code, and a docstring is a string to it; yet an Example is code that
    users copy, so it must import the public API too.
    """
    parser = doctest.DocTestParser()
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    examples = [
        example.source
        for node in ast.walk(ast.parse(source))
        if isinstance(node, documented) and ast.get_docstring(node)
        for example in parser.get_examples(ast.get_docstring(node))
    ]
    return "".join(examples)


def test_flows_import_only_the_public_api():
    files = sorted(FLOWS.rglob("*.py"))
    assert len(files) >= 10, files  # every module of the plugin, not an empty glob
    private = {}
    for path in files:
        source = path.read_text(encoding="utf-8")
        uses = private_gentool_uses(source) + private_gentool_uses(doctest_source(source))
        private[str(path.relative_to(FLOWS))] = uses
    assert {name: uses for name, uses in private.items() if uses} == {}


def test_the_check_reads_the_doctests():
    source = '''
def f():
    """Example:
        >>> from gentool.family import DataKind
        >>> import gentool.api
    """
'''
    assert private_gentool_uses(source) == []  # in a docstring: invisible to the check alone
    assert private_gentool_uses(doctest_source(source)) == ["gentool.family"]
