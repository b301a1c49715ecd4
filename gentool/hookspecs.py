"""The plugin contract: the hooks a gentool plugin may implement.

Each hook receives a ``register`` callback, so a plugin never touches a global registry.
"""

import pluggy

hookspec = pluggy.HookspecMarker("gentool")


@hookspec
def register_families(register):
    """Register model families: call ``register(FamilySpec(...))`` once per family."""


@hookspec
def register_datasets(register):
    """Register named datasets: call ``register(DatasetEntry(...))`` once per dataset."""
