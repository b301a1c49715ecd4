"""The built-in translation plugin reaches gentool only through ``gentool.api``, as a
third-party plugin must: in its imports, its lazy names and its doctests."""

import ast
import doctest
import importlib.util
import inspect
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PLUGIN = TESTS.parent / "plugins" / "gentool_translation"


@pytest.fixture(scope="module")
def private_gentool_uses():
    """The example plugin's check, loaded from its file: the tests folder is no package, so
    under ``--import-mode=importlib`` it cannot be imported by name."""
    spec = importlib.util.spec_from_file_location(
        "_example_plugin_checks", TESTS / "test_example_plugin.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.private_gentool_uses


def plugin_files() -> list[Path]:
    files = sorted(PLUGIN.rglob("*.py"))
    assert {"plugin.py", "base.py", "cyclegan.py", "pix2pix.py"} <= {f.name for f in files}
    return files


def test_the_translation_plugin_imports_only_the_public_api(private_gentool_uses):
    private = {f.name: private_gentool_uses(f.read_text(encoding="utf-8")) for f in plugin_files()}
    assert {name: uses for name, uses in private.items() if uses} == {}


def doctest_source(source: str) -> str:
    """The code of every doctest example in ``source``'s docstrings, one after another."""
    parser = doctest.DocTestParser()
    docstrings = [
        inspect.cleandoc(node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ">>>" in node.value
    ]
    return "".join(e.source for text in docstrings for e in parser.get_examples(text))


def test_the_translation_doctests_import_only_the_public_api(private_gentool_uses):
    # Docstrings are strings to the check above; their examples are code a reader copies.
    examples = {f.name: doctest_source(f.read_text(encoding="utf-8")) for f in plugin_files()}
    assert any("gentool.api" in source for source in examples.values())
    private = {name: private_gentool_uses(source) for name, source in examples.items()}
    assert {name: uses for name, uses in private.items() if uses} == {}


def test_the_check_sees_a_private_import_in_a_doctest(private_gentool_uses):
    example = '"""\n>>> from gentool.family import DataKind\n"""\n'
    assert private_gentool_uses(example) == []  # a docstring alone passes the import check
    assert private_gentool_uses(doctest_source(example)) == ["gentool.family"]
