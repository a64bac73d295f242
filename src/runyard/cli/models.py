"""`runyard models deploy|predict|status|rollback|keys`."""

from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Serve models: deploy, call, watch, roll back, and manage access keys."""
