"""`runyard operator`: the controller on a cluster (in it, or outside it with a kubeconfig)."""

from __future__ import annotations

import click


@click.command(short_help="Run the operator against a Kubernetes cluster.")
def operator() -> None:
    """Run the operator (placeholder until the Kubernetes work lands)."""
    from runyard.controller.kube.main import main

    main()
