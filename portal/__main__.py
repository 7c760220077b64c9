"""``python -m portal``: the same as the ``portal`` command (used for child components)."""

from portal.cli import main

main()
