"""`runyard env list|build|show|rm`. STUB (issue 7)."""

from __future__ import annotations

import click


@click.group()
def env() -> None:
    """Environments: a project's dependencies, built once and reused by its runs."""
