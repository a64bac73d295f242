"""`runyard nodes`. STUB (issue 7)."""

from __future__ import annotations

import click


@click.command()
def nodes() -> None:
    """The node's capacity, what runs hold of it, and its GPUs."""
