"""``python -m tlcore_cli ...`` runs the ``transfer-lab`` command."""

from tlcore_cli.main import entry_point

entry_point()
