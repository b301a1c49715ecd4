"""gentool-realnvp: a third-party gentool plugin adding the ``realnvp`` flow family.

Kept light (no torch): gentool imports ``gentool_realnvp.plugin`` at start-up.
"""

__version__ = "0.1.0"
