"""``python -m mbuild``: the same as the ``mbuild`` command."""

from .entry import main

main()
