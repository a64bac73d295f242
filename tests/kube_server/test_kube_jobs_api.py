"""A job's history, next fire times and webhook secret through `runyard server --kubernetes`: the Job and
its Runs live in the cluster (no job tables there), so these routes read them from it.

The server is a real process over HTTP on loopback; the Kubernetes API it talks to is a fake (kmock's
KubernetesEmulator, extended in tests/kube/emulator.py) because no real kube-apiserver can run here. The
Runs a schedule fires are written as the job controller writes them (store.jobs.fire_run under the
controller's deterministic name), with the official kubernetes client. The module runs unchanged against a
real cluster when KUBECONFIG names one. The `server` and `kube` fixtures are test_kube_server.py's."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
from kubernetes import client
from tests.cli.helpers import runyard_cli
from tests.kube_server.test_kube_server import kube, server  # noqa: F401 (the fixtures)
from tests.support import until

from runyard.controller.kube.jobs import scheduled_run_name
from runyard.core.resources import Job
from runyard.store.jobs import Fire, fire_run
from runyard.store.kube.resources import KubeResources

GROUP, VERSION = "runyard.dev", "v1"


def _job(name: str, **spec: object) -> dict:
    body = {"template": {"command": "python etl.py"}, **spec}
    return {"apiVersion": "runyard.dev/v1", "kind": "Job", "metadata": {"name": name}, "spec": body}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _next_second() -> None:
    """The API server stamps creationTimestamp in whole seconds: fires made apart must be a second apart."""
    time.sleep(1.05)


def test_a_jobs_history_on_a_cluster_is_its_runs_newest_first(server, kube):  # noqa: F811
    """A scheduled fire and two manual triggers come back newest first, each with its trigger, scheduled
    instant, creation time, run and phase; a Run that only carries the job's label (not owned by this Job)
    is none of its fires; `limit` keeps the newest; an unknown job is a 404 saying how to list them. The
    CLI's `jobs history` shows them."""
    with server.api() as api:
        created = api.put(
            "/jobs/nightly", json=_job("nightly", schedule="0 3 * * *", concurrencyPolicy="Allow")
        )
        assert created.status_code == 201, created.text
        job = Job.model_validate(created.json())
        at = datetime(2026, 12, 1, 3, tzinfo=UTC)
        fire = Fire(job, "schedule", at.isoformat(), scheduled_at=at)
        scheduled = KubeResources(kube.api_client).create(fire_run(fire, scheduled_run_name("nightly", at)))
        stranger = {
            "apiVersion": "runyard.dev/v1",
            "kind": "Run",
            "metadata": {"name": "lookalike", "labels": {"runyard.dev/job": "nightly"}},
            "spec": {"command": "true"},
        }
        client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(
            GROUP, VERSION, "default", "runs", stranger
        )
        manual = []
        for key in ("k-1", "k-2"):
            _next_second()
            done = api.post("/jobs/nightly/trigger", headers={"Idempotency-Key": key})
            assert done.status_code == 201, done.text
            manual.append(done.json()["metadata"]["name"])

        got = api.get("/jobs/nightly/history")
        assert got.status_code == 200, got.text
        items = got.json()["items"]
        assert [i["run"] for i in items] == [manual[1], manual[0], scheduled.metadata.name]
        assert [i["trigger"] for i in items] == ["manual", "manual", "schedule"]
        oldest = items[-1]
        assert _instant(oldest["scheduledAt"]) == at
        assert oldest["runUid"] == scheduled.uid
        assert (oldest["outcome"], oldest["phase"], oldest["message"]) == ("Created", "Pending", "")
        assert items[0]["scheduledAt"] is None
        fired = [_instant(i["firedAt"]) for i in items]
        assert fired == sorted(fired, reverse=True) and fired[0] > fired[-1]

        newest = api.get("/jobs/nightly/history", params={"limit": 1}).json()["items"]
        assert [i["run"] for i in newest] == [manual[1]]
        missing = api.get("/jobs/absent/history")
        assert missing.status_code == 404
        assert "runyard jobs list" in missing.json()["error"]["message"]

    shown = runyard_cli("jobs", "history", "nightly", "-o", "wide", env=server.env())
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "nightly" in line]
    assert [next(w for w in line.split() if w.startswith("nightly")) for line in lines] == [
        manual[1],
        manual[0],
        scheduled.metadata.name,
    ]
    assert "schedule" in lines[-1] and "Created" in lines[-1] and "lookalike" not in shown.stdout


def test_a_jobs_next_fires_and_webhook_secret_on_a_cluster_come_from_the_job_there(server, kube):  # noqa: F811
    """There is no job state row on a cluster: the last fire the controller claimed is the Job's
    status.lastScheduleTime, so fires are counted from it when it is later than now (here, written as the
    controller writes it); `runyard describe job` shows the same fires. A job without a schedule, or
    suspended, has none and says why. The webhook secret is the database's for the cluster Job's uid: stable
    while it lives, printed by `runyard jobs secret`, a new one for a Job made again under the same name.
    An unknown job is a 404 on both routes."""
    objects = client.CustomObjectsApi(kube.api_client)
    with server.api() as api:
        nightly = _job("nightly", schedule="0 3 * * *", timeZone="Europe/Paris")
        assert api.put("/jobs/nightly", json=nightly).status_code == 201
        assert api.put("/jobs/by-hand", json=_job("by-hand")).status_code == 201
        status = {"lastScheduleTime": "2030-01-10T02:00:00Z", "scheduleFrom": "2026-01-01T00:00:00Z"}
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", "jobs", "nightly", {"status": status}
        )

        got = api.get("/jobs/nightly/schedule", params={"count": 2})
        assert got.status_code == 200, got.text
        doc = got.json()
        assert _instant(doc["from"]) == datetime(2030, 1, 10, 2, tzinfo=UTC)
        assert [_instant(f["utc"]) for f in doc["fires"]] == [
            datetime(2030, 1, 11, 2, tzinfo=UTC),
            datetime(2030, 1, 12, 2, tzinfo=UTC),
        ]
        assert doc["fires"][0]["local"].startswith("2030-01-11T03:00:00")
        assert (doc["timeZone"], doc["suspended"], doc["reason"]) == ("Europe/Paris", False, None)

        shown = runyard_cli("describe", "job", "nightly", env=server.env())
        assert shown.returncode == 0, shown.stderr
        assert "2030-01-11 02:00 UTC" in shown.stdout and "2030-01-12 02:00 UTC" in shown.stdout

        by_hand = api.get("/jobs/by-hand/schedule").json()
        assert by_hand["fires"] == [] and "has no schedule" in by_hand["reason"]
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "jobs", "nightly", {"spec": {"suspend": True}}
        )
        suspended = api.get("/jobs/nightly/schedule").json()
        assert suspended["fires"] == [] and "runyard jobs resume nightly" in suspended["reason"]
        assert api.get("/jobs/absent/schedule").status_code == 404

        first = api.get("/jobs/by-hand/webhook-secret")
        assert first.status_code == 200, first.text
        secret = first.json()["secret"]
        assert len(secret) >= 32
        assert api.get("/jobs/by-hand/webhook-secret").json()["secret"] == secret
        assert api.get("/jobs/nightly/webhook-secret").json()["secret"] != secret
        printed = runyard_cli("jobs", "secret", "by-hand", env=server.env())
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.strip() == secret

        objects.delete_namespaced_custom_object(GROUP, VERSION, "default", "jobs", "by-hand")
        until(lambda: api.put("/jobs/by-hand", json=_job("by-hand")).status_code == 201, "the Job made again")
        assert api.get("/jobs/by-hand/webhook-secret").json()["secret"] != secret
        missing = api.get("/jobs/absent/webhook-secret")
        assert missing.status_code == 404 and "runyard jobs list" in missing.json()["error"]["message"]


def test_triggers_of_a_forbid_job_at_the_same_moment_make_one_run(server, kube):  # noqa: F811
    """Four triggers with different request keys at once, three times: one run each time, the others a 409
    naming it. Without a store transaction, each could see no active run and make one; the claim written on
    the Job, conditional on its resourceVersion, lets one through (services/kube_resources.FORBID_CLAIM)."""
    with server.api() as api:
        for round_ in range(3):
            name = f"single-{round_}"
            assert api.put(f"/jobs/{name}", json=_job(name)).status_code == 201  # Forbid: the default
            start = threading.Barrier(4)

            def trigger(i: int, name: str = name, start: threading.Barrier = start) -> httpx.Response:
                start.wait()
                return api.post(f"/jobs/{name}/trigger", headers={"Idempotency-Key": f"{name}-{i}"})

            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(trigger, range(4)))
            codes = sorted(a.status_code for a in answers)
            assert codes == [201, 409, 409, 409], [a.text for a in answers]
            made = next(a for a in answers if a.status_code == 201).json()["metadata"]["name"]
            assert all(made in a.json()["error"]["message"] for a in answers if a.status_code == 409)
            runs = KubeResources(kube.api_client).list("Run", "default", {"runyard.dev/job": name})[0]
            assert [r.metadata.name for r in runs] == [made]
