"""``python -m gentool``: the same command line as the ``gentool`` script."""

import sys

from gentool.cli import main

if __name__ == "__main__":
    sys.exit(main())
