"""What a Session's objects look like on a cluster (pure builders, no API): valid against the upstream
Kubernetes schemas (kubernetes-validate, strict), and the rules that decide a restart."""

from __future__ import annotations

from base64 import b64decode
from datetime import UTC, datetime, timedelta

import kubernetes_validate

from runyard.controller.kube.sessions import (
    claim_manifest,
    ended,
    ready,
    session_pod,
    start_wanted,
    token_secret_manifest,
)
from runyard.controller.sessions import RESTART_ANNOTATION
from runyard.core.resources import ObjectMeta, Session, SessionSpec, SessionStatus
from runyard.runtime.kubernetes.pods import session_service_manifest

K8S = "1.33"


def a_session(**spec: object) -> Session:
    meta = ObjectMeta(name="nb", project="team-a", uid="u-1", generation=1)
    return Session(metadata=meta, spec=SessionSpec.model_validate(spec), status=SessionStatus())


def test_every_object_of_a_session_fits_the_upstream_schemas() -> None:
    s = a_session(resources={"gpu": 2, "cpu": "1", "memory": "2Gi"}, snapshot="sha256:" + "a" * 64)
    owner = {"kind": "Session", "name": "nb", "uid": "u-1"}
    objects = [
        session_pod(s, "nb-abc123", image="runyard:1", server_url="http://server:8765", env_lock="x==1"),
        claim_manifest(s),
        token_secret_manifest(s),
        session_service_manifest("nb", project="team-a", namespace="team-a", owner=owner, port=8888),
    ]
    for obj in objects:
        assert kubernetes_validate.validate(obj, K8S, strict=True)


def test_each_session_gets_its_own_random_token() -> None:
    tokens = {b64decode(token_secret_manifest(a_session())["data"]["token"]) for _ in range(3)}
    assert len(tokens) == 3 and all(len(t) == 64 for t in tokens)


def test_the_kernel_runs_the_environment_of_the_lock() -> None:
    pod = session_pod(a_session(), "nb-1", image="runyard:1", server_url="http://s", env_lock="x==1")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["RUNYARD_SESSION_KERNEL_PYTHON"].startswith("/runyard/envs/")
    assert env["RUNYARD_SESSION_KERNEL_PYTHON"].endswith("/bin/python")
    assert env["VIRTUAL_ENV"] == env["RUNYARD_SESSION_KERNEL_PYTHON"].removesuffix("/bin/python")


def pod(phase: str, created: datetime, ready_: bool = False) -> dict:
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    main = {"name": "main", "ready": ready_, "state": {"running": {"startedAt": stamp}}}
    if phase == "Failed":
        main["state"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    return {
        "metadata": {"name": "nb-1", "creationTimestamp": stamp},
        "status": {"phase": phase, "containerStatuses": [main]},
    }


def test_a_restart_is_a_spec_change_or_a_start_asked_after_the_pod_was_made() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    failed = pod("Failed", at)
    assert ended(failed) and not ready(failed)
    s = a_session()
    s.status.observedGeneration = 1
    assert not start_wanted(s, failed)
    s.metadata.annotations[RESTART_ANNOTATION] = (at - timedelta(seconds=5)).isoformat()
    assert not start_wanted(s, failed)  # asked before this pod: that start made it
    s.metadata.annotations[RESTART_ANNOTATION] = (at + timedelta(seconds=5)).isoformat()
    assert start_wanted(s, failed)
    del s.metadata.annotations[RESTART_ANNOTATION]
    s.metadata.generation = 2  # edited (or stopped and started) since
    assert start_wanted(s, failed)
    assert ready(pod("Running", at, ready_=True)) and not ended(pod("Running", at))
