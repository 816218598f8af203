"""The ``mbuild`` command's entry point: the no-op fast path, then the CLI.

Kept free of heavy imports, so an unchanged build answers in a few tens of
milliseconds (see :mod:`mbuild.fastpath`).
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    from .fastpath import main_fast

    if main_fast(argv):
        sys.exit(0)
    from .cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
