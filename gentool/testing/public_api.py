"""Whether a plugin's source reaches into gentool beyond its public API (``gentool.api``).

A plugin imports ``gentool.api`` (and ``gentool`` for ``hookimpl`` and ``__version__``)
and nothing else of gentool: the rest is internal and changes between versions. The
check reads the source with :mod:`ast`, so it sees imports at module level and inside
functions, ``gentool.x`` attribute access, lazy imports by name (``"gentool.x:y"``,
``importlib.import_module("gentool.x")``) and the code of every doctest, which users copy.

Example:
    >>> private_gentool_uses("from gentool.api import Model\\nimport gentool")
    []
    >>> private_gentool_uses("from gentool.training import fit")
    ['gentool.training']
"""

from __future__ import annotations

import ast
import doctest
import inspect
from pathlib import Path

__all__ = ["private_gentool_uses", "private_uses_in"]

PUBLIC_MODULES = {"gentool", "gentool.api"}
PUBLIC_FROM_GENTOOL = {"api", "hookimpl", "__version__"}


def private_gentool_uses(source: str) -> list[str]:
    """Every place ``source`` (and its doctests) reaches into gentool beyond ``gentool``
    and ``gentool.api``, in the order found."""
    found = _private_uses(source)
    for example in _doctest_examples(source):
        try:
            found += _private_uses(example)
        except SyntaxError:  # a fragment that only parses within its doctest (``...``)
            continue
    return found


def private_uses_in(folder: Path, skip: tuple[str, ...] = ("tests",)) -> dict[str, list[str]]:
    """The private uses of every ``.py`` file under ``folder`` that has any, by path;
    files in a subfolder named in ``skip`` (a package's own tests) are not read."""
    folder = Path(folder)
    found = {}
    for path in sorted(folder.rglob("*.py")):
        if set(path.relative_to(folder).parts[:-1]) & set(skip):
            continue
        uses = private_gentool_uses(path.read_text(encoding="utf-8"))
        if uses:
            found[str(path.relative_to(folder))] = uses
    return found


def _private_uses(source: str) -> list[str]:
    import gentool.api

    found = []
    public_names = set(gentool.api.__all__)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if _is_gentool(a.name) and a.name not in PUBLIC_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_gentool(node.module):
            names = {a.name for a in node.names}
            if node.module == "gentool.api":
                found += [f"gentool.api.{n}" for n in sorted(names - public_names)]
            elif node.module == "gentool":
                found += [f"gentool.{n}" for n in sorted(names - PUBLIC_FROM_GENTOOL)]
            else:
                found.append(node.module)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "gentool"
            and node.attr not in PUBLIC_FROM_GENTOOL
        ):
            found.append(f"gentool.{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # Lazy imports by name ("gentool.training:fit", importlib.import_module(...)).
            target = node.value.partition(":")[0]
            if _is_gentool(target) and " " not in target and target not in PUBLIC_MODULES:
                found.append(target)
    return found


def _doctest_examples(source: str) -> list[str]:
    """The code of every doctest example in ``source``'s strings: to the check a docstring
    is a string, yet an Example is code that users copy."""
    parser = doctest.DocTestParser()
    texts = [
        inspect.cleandoc(node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ">>>" in node.value
    ]
    examples = []
    for text in texts:
        try:
            examples += [example.source for example in parser.get_examples(text)]
        except ValueError:  # a string with ">>>" in it that is no doctest
            continue
    return examples


def _is_gentool(module: str | None) -> bool:
    return module is not None and (module == "gentool" or module.startswith("gentool."))
