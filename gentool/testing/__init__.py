"""Tests a model family (a built-in or a plugin's) runs to keep gentool's contract.

:class:`FamilyContract` is the shared suite (train steps, checkpoints, resume, capabilities,
bench); :func:`private_gentool_uses` finds where a plugin reaches past ``gentool.api``.
Importing :mod:`gentool.testing` needs pytest (``pip install gentool[test]``).
"""

from gentool.testing.contract import DEFAULT_DATA, Contract, FamilyContract
from gentool.testing.public_api import private_gentool_uses, private_uses_in

__all__ = [
    "DEFAULT_DATA",
    "Contract",
    "FamilyContract",
    "private_gentool_uses",
    "private_uses_in",
]
