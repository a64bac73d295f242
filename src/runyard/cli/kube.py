"""`runyard crds` and `runyard manifests`: the install on Kubernetes, rendered from the code (no cluster
needed: pipe them to `kubectl apply -f -`)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="Print the CustomResourceDefinitions of runyard's kinds (YAML).")
def crds() -> None:
    """Print the CRDs of Session, Experiment, Job, Model and Run, generated from the models the API
    validates with (multi-document YAML, for `kubectl apply -f -`)."""
    from runyard.kube.crds import crds as all_crds
    from runyard.kube.manifests import to_yaml

    click.echo(to_yaml(all_crds(), many=True), nl=False)


@click.command(short_help="Print every manifest of an install on Kubernetes (YAML).")
@click.option(
    "--values",
    "values_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML values over the defaults (the Helm chart's values.yaml lists them).",
)
def manifests(values_file: Path | None) -> None:
    """Print the whole install: CRDs, namespace, operator and API server with their RBAC, and PostgreSQL
    or the external database's URL (multi-document YAML, for `kubectl apply -f -`)."""
    import yaml

    from runyard.cli.errors import fail
    from runyard.kube.manifests import render, to_yaml

    values = None
    if values_file is not None:
        try:
            values = yaml.safe_load(values_file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise fail(f"{values_file}: not YAML: {exc}") from None
        if not isinstance(values, dict):
            raise fail(f"{values_file}: expected a mapping of values")
    click.echo(to_yaml(render(values), many=True), nl=False)
