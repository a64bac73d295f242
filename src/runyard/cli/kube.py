"""`runyard crds` and `runyard manifests`: the install on Kubernetes, rendered from the code."""

from __future__ import annotations

import click


@click.command(short_help="Print the CustomResourceDefinitions of runyard's kinds (YAML).")
def crds() -> None:
    """Print the CRDs (placeholder until the Kubernetes work lands)."""
    raise click.ClickException("not built yet")


@click.command(short_help="Print every manifest of an install on Kubernetes (YAML).")
def manifests() -> None:
    """Print the install's manifests (placeholder until the Kubernetes work lands)."""
    raise click.ClickException("not built yet")
