"""`runyard operator`: connect to the cluster, campaign for the Lease, reconcile while leading, and release
the Lease on SIGTERM so a standby replica takes over at once rather than after the lease runs out."""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.controller.kube.base import KindController

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAMESPACE = "runyard"


def main(
    kubeconfig: str | None = None,
    context: str | None = None,
    namespaces: tuple[str, ...] = (),
    image: str = "runyard/runyard:latest",
    server_url: str = "http://runyard-server.runyard.svc:8765",
    lease_namespace: str | None = None,
    identity: str | None = None,
    project_objects: bool = True,
    store_url: str | None = None,
) -> None:
    """Run until SIGTERM or SIGINT. The Lease lives in `lease_namespace`: the operator's own (POD_NAMESPACE,
    set by its Deployment), else the first watched namespace, else 'runyard'. Its identity is the pod's
    name (POD_NAME) when set. With `store_url` (the platform's database) each pod gets a runyard token, in a
    Secret owned by its Run, Model or Session, jobs send their notifications (queued there), and a Model
    following a registry alias rolls when it moves; without, pods get none (and cannot fetch a snapshot),
    jobs notify nobody and aliases are resolved by the replicas as they load."""
    from runyard.controller.kube.leader import LeaseElector, default_identity
    from runyard.controller.kube.operator import Operator
    from runyard.kube.api import CallCounter, connect
    from runyard.runtime.kubernetes.runtime import KubernetesRuntime, RuntimeOptions
    from runyard.store.kube.resources import KubeResources

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_client = connect(kubeconfig, context)
    calls = CallCounter()
    resources = KubeResources(api_client, calls)
    logs = Path(tempfile.mkdtemp(prefix="runyard-operator-logs-"))  # the operator reads no logs itself
    tokens, store = None, None
    if store_url:
        from runyard.controller.kube.tokens import StoreTokens
        from runyard.store import Store

        store = Store(store_url)
        tokens = StoreTokens(store)
    options = RuntimeOptions(image=image, server_url=server_url, token_secrets=tokens is not None)
    runtime = KubernetesRuntime(api_client, options, logs, calls=calls)
    lease_ns = (
        lease_namespace or os.environ.get("POD_NAMESPACE") or (namespaces or (DEFAULT_LEASE_NAMESPACE,))[0]
    )
    elector = LeaseElector(
        connect(kubeconfig, context),  # its own client: renewals never queue behind reconciles
        lease_ns,
        identity=identity or os.environ.get("POD_NAME") or default_identity(),
    )
    scope = list(namespaces) or None
    from runyard.controller.kube.jobs import JobController
    from runyard.controller.kube.models import ModelController
    from runyard.controller.kube.sessions import SessionController

    # One per kind, all led by the one Lease: the Operator (Experiments and Runs) first, stopped last.
    cluster: dict[str, Any] = {
        "api_client": api_client,
        "namespaces": scope,
        "server_url": server_url,
        "calls": calls,
    }
    controllers: list[KindController] = [
        Operator(resources, runtime, elector, project_objects=project_objects, tokens=tokens, **cluster),
        ModelController(resources, elector, image=image, tokens=tokens, registry=store, **cluster),
        JobController(resources, elector, image=image, outbox=store, **cluster),
        SessionController(
            resources, elector, image=image, project_objects=project_objects, tokens=tokens, **cluster
        ),
    ]

    def on_change(leads: bool) -> None:
        for controller in controllers:
            controller.leading(leads)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: releasing the lease and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watched = ", ".join(namespaces) or "all namespaces"
    log.info("operator %s: watching %s; lease %s/%s", elector.identity, watched, lease_ns, elector.name)
    for controller in controllers:
        controller.start()
    try:
        elector.run(stop, on_change=on_change)  # returns after releasing the Lease
    finally:
        for controller in reversed(controllers):
            controller.stop()
        log.info("stopped; API calls by verb: %s", calls.counts())
