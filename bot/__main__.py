"""``python -m bot`` runs the ``imagebot`` command."""

from bot.cli import main

main()
