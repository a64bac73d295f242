"""`runyard operator`: the controller on a cluster (in it, or outside it with a kubeconfig)."""

from __future__ import annotations

import click


@click.command(short_help="Run the operator against a Kubernetes cluster.")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Kubeconfig file (default: in-cluster, else KUBECONFIG or ~/.kube/config).",
)
@click.option("--context", help="Kubeconfig context (default: its current one).")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Project namespace to watch; repeat for several (default: all namespaces).",
)
@click.option(
    "--image",
    default="runyard/runyard:latest",
    show_default=True,
    envvar="RUNYARD_OPERATOR_IMAGE",
    help="Image of run pods (runyard installed) [env RUNYARD_OPERATOR_IMAGE].",
)
@click.option(
    "--server-url",
    default="http://runyard-server.runyard.svc:8765",
    show_default=True,
    envvar="RUNYARD_OPERATOR_SERVER_URL",
    help="Where pods reach the runyard API [env RUNYARD_OPERATOR_SERVER_URL].",
)
@click.option(
    "--lease-namespace",
    help="Namespace of the leader Lease (default: POD_NAMESPACE, else the first --namespace, else runyard).",
)
@click.option(
    "--store-url",
    envvar="RUNYARD_SERVER_STORE_URL",
    help="The platform's database, where run tokens are issued [env RUNYARD_SERVER_STORE_URL]; "
    "without it pods get no run token.",
)
@click.option("--identity", help="Name in the Lease (default: POD_NAME, else host, pid and a random suffix).")
@click.option(
    "--no-project-objects",
    is_flag=True,
    help="Do not give project namespaces a quota, limits and Spark's account.",
)
def operator(
    kubeconfig: str | None,
    context: str | None,
    namespaces: tuple[str, ...],
    image: str,
    server_url: str,
    lease_namespace: str | None,
    store_url: str | None,
    identity: str | None,
    no_project_objects: bool,
) -> None:
    """Run the operator: Experiments get their Runs, Runs their pods, and pods' states flow back into
    their status. Replicas elect one leader through a Lease; SIGTERM releases it, so a standby takes over
    at once."""
    from runyard.controller.kube.main import main

    main(
        kubeconfig=kubeconfig,
        context=context,
        namespaces=namespaces,
        image=image,
        server_url=server_url,
        lease_namespace=lease_namespace,
        identity=identity,
        project_objects=not no_project_objects,
        store_url=store_url,
    )
