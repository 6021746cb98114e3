"""``python -m adapters`` runs the ``imagebot`` command."""

from adapters.main import main

main()
