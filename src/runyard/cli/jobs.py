"""`runyard jobs`: list, history, graph, trigger, suspend, resume, secret."""

from __future__ import annotations

import click

from runyard.cli.errors import RunyardGroup


@click.group(cls=RunyardGroup)
def jobs() -> None:
    """Scheduled jobs and pipelines: what fires when, what ran, and triggering one by hand."""
