"""``python -m specs_core`` runs the ``specs`` command."""

from specs_core.cli import main

main()
