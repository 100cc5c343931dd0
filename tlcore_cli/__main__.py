"""``python -m tlcore_cli ...`` runs the ``transfer-lab`` command."""

try:
    from tlcore_cli.main import entry_point
except KeyboardInterrupt:  # Ctrl-C while Python was still importing: no traceback for that
    raise SystemExit(130) from None

entry_point()
