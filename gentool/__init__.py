"""gentool: one command line over deep generative models, extensible through plugins."""

import pluggy

__version__ = "0.1.0"

#: Decorator that marks a plugin's hook implementations (see :mod:`gentool.hookspecs`).
hookimpl = pluggy.HookimplMarker("gentool")

__all__ = ["__version__", "hookimpl"]
