"""Running JobControllers against a test cluster with a clock the test moves, so that schedules fire
without waiting for them. The API server is a fake (kmock's KubernetesEmulator, extended) because no real
kube-apiserver can run here; with KUBECONFIG naming a real cluster the same code runs there."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from kubernetes import client
from tests.kube.cluster import Cluster
from tests.kube_operator.harness import new_client, wait_for

from runyard.controller.kube.jobs import JobController
from runyard.core.resources import Job, Run
from runyard.store.jobs import JOB_LABEL
from runyard.store.kube.resources import KubeResources

GROUP, VERSION = "runyard.dev", "v1"


class Clock:
    """Wall time as the test sets it (aware, UTC)."""

    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


class Elector:
    """Leadership as the test sets it (the Lease itself is tested in tests/kube_operator)."""

    def __init__(self, leads: bool = True):
        self.leads = leads

    def is_leader(self) -> bool:
        return self.leads


@contextmanager
def controller(
    kube: Cluster, namespace: str, clock: Clock, leads: bool = True, **notify: Any
) -> Iterator[JobController]:
    """`notify`: JobController's `outbox` (a Store) and `notify` (NotifySettings), for notifications."""
    api = new_client(kube)
    elector = Elector(leads)
    ctl = JobController(
        KubeResources(api),
        elector,
        api_client=api,
        namespaces=[namespace],
        image="runyard:test",
        clock=clock,
        **notify,
    )
    ctl.start()
    ctl.leading(leads)
    try:
        yield ctl
    finally:
        ctl.stop()
        api.close()


def set_leading(ctl: JobController, leads: bool) -> None:
    ctl.elector.leads = leads  # type: ignore[attr-defined]
    ctl.leading(leads)


class View:
    """The test's own view of the namespace (as kubectl and the Operator would write)."""

    def __init__(self, kube: Cluster, namespace: str):
        self.ns = namespace
        self.resources = KubeResources(kube.api_client)
        self.custom = client.CustomObjectsApi(kube.api_client)
        self.core = client.CoreV1Api(kube.api_client)

    def apply_job(self, name: str, **spec: Any) -> Job:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"template": {"command": "python train.py"}, **spec},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "jobs", body)
        return self.job(name)

    def update_spec(self, name: str, **spec: Any) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.ns,
            "jobs",
            name,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )

    def job(self, name: str) -> Job:
        job = self.resources.get("Job", self.ns, name)
        assert isinstance(job, Job)
        return job

    def runs(self, job: str) -> list[Run]:
        items, _ = self.resources.list("Run", self.ns, {JOB_LABEL: job})
        return sorted((r for r in items if isinstance(r, Run)), key=lambda r: r.metadata.name)

    def finish(self, run: str, phase: str, at: datetime) -> None:
        """As the Operator writes a Run's end."""
        self.resources.patch_status("Run", self.ns, run, {"phase": phase, "finishedAt": at.isoformat()})

    def events(self, reason: str) -> list[str]:
        items = self.core.list_namespaced_event(self.ns).items
        return [e.message for e in items if e.reason == reason]

    def wait_status(self, name: str, probe: Any, what: str = "the job's status") -> Job:
        return wait_for(what, lambda: (lambda j: j if probe(j) else None)(self.job(name)))

    def wait_runs(self, job: str, count: int) -> list[Run]:
        return wait_for(
            f"{count} runs of {job}", lambda: (lambda r: r if len(r) == count else None)(self.runs(job))
        )


def settle(ctl: JobController) -> None:
    """Have the controller look at every job, and wait until it has (for what must NOT happen)."""
    ctl.resync()
    ctl.wake()
    idle = 0
    while idle < 3:
        time.sleep(0.05)
        idle = idle + 1 if len(ctl.queue) == 0 else 0
