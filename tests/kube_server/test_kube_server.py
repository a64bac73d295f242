"""`runyard server --kubernetes`: the kinds live in the cluster's custom resources, so `kubectl`, the CLI
and the REST API read and change one object.

The server is a real process over HTTP on loopback; the Kubernetes API it talks to is a fake (kmock's
KubernetesEmulator, extended in tests/kube/emulator.py with resourceVersion, 409, the status subresource,
410 and CRD validation) because no real kube-apiserver can run here. The "kubectl" side of each test is the
official kubernetes client, as kubectl's requests are. The module runs unchanged against a real cluster
when KUBECONFIG names one (it then uses that cluster's CRDs and namespaces)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client
from tests.cli.helpers import experiment_yaml, runyard_cli
from tests.kube.cluster import Cluster, cluster, install_crds
from tests.support import ServerProcess, until

from runyard.controller.kube.base import record_event
from runyard.core.errors import Gone
from runyard.core.resources import Experiment
from runyard.rest import Rest
from runyard.runtime.kubernetes.pods import session_service_name

GROUP, VERSION = "runyard.dev", "v1"


def _kubeconfig(path: Path, url: str) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "tests", "user": {"token": "unused"}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tests"}}],
                "current-context": "emulator",
            }
        )
    )
    return str(path)


@pytest.fixture
def kube() -> Iterator[Cluster]:
    with cluster(require_namespaces=True) as c:  # as a real API server: a namespace must exist first
        install_crds(c.api_client, wait=c.emulator is None)
        if c.emulator is not None:
            client.CoreV1Api(c.api_client).create_namespace({"metadata": {"name": "default"}})
        yield c


@pytest.fixture
def server(tmp_path, kube: Cluster) -> Iterator[ServerProcess]:
    config = os.environ.get("KUBECONFIG") or _kubeconfig(tmp_path / "kubeconfig", kube.url)
    env = {**os.environ, "RUNYARD_SERVER_KUBERNETES": "true", "RUNYARD_SERVER_KUBECONFIG": config}
    srv = ServerProcess(tmp_path / "home", env=env).start()
    yield srv
    srv.stop()


def _objects(kube: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client)


def test_runyard_apply_kubectl_and_the_rest_api_see_and_change_one_object(server, kube, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('trained')\n")
    (project / "exp.yaml").write_text(experiment_yaml("shared", "python train.py"))
    applied = runyard_cli("apply", "-f", "exp.yaml", env=server.env(), cwd=project)
    assert applied.returncode == 0, applied.stderr
    assert "created" in applied.stdout + applied.stderr

    # kubectl get experiment shared -n default
    stored = _objects(kube).get_namespaced_custom_object(GROUP, VERSION, "default", "experiments", "shared")
    assert stored["spec"]["command"] == "python train.py"
    uid = stored["metadata"]["uid"]

    # kubectl label: the REST API sees the change, on the same object and version
    _objects(kube).patch_namespaced_custom_object(
        GROUP, VERSION, "default", "experiments", "shared", {"metadata": {"labels": {"team": "vision"}}}
    )
    with server.api() as api:
        got = api.get("/experiments/shared").json()
        assert got["metadata"]["uid"] == uid
        assert got["metadata"]["project"] == "default"
        assert got["metadata"]["labels"] == {"team": "vision"}
        listed = api.get("/experiments", params={"labelSelector": "team=vision"}).json()
        assert [i["metadata"]["name"] for i in listed["items"]] == ["shared"]
        assert listed["metadata"]["revision"] >= got["metadata"]["resourceVersion"]
        assert api.get("/experiments", params={"labelSelector": "team=nlp"}).json()["items"] == []

        # applying the same document again changes nothing; a changed label is written to the cluster
        doc = {k: got[k] for k in ("apiVersion", "kind", "spec")}  # the spec names the uploaded snapshot
        doc["metadata"] = {"name": "shared", "labels": {"team": "vision"}}
        same = api.put("/experiments/shared", json=doc)
        assert same.status_code == 200 and same.headers["X-Runyard-Result"] == "unchanged"
        doc["metadata"]["labels"] = {"team": "vision", "stage": "2"}
        assert api.put("/experiments/shared", json=doc).headers["X-Runyard-Result"] == "configured"
    labels = _objects(kube).get_namespaced_custom_object(GROUP, VERSION, "default", "experiments", "shared")
    assert labels["metadata"]["labels"] == {"team": "vision", "stage": "2"}


def test_an_object_made_with_kubectl_in_its_own_namespace_is_the_projects(server, kube):
    namespace = "team-a"
    client.CoreV1Api(kube.api_client).create_namespace({"metadata": {"name": namespace}})
    body = yaml.safe_load(Path("examples/experiment.yaml").read_text())
    body["metadata"] = {"name": "from-kubectl", "namespace": namespace}
    _objects(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, "experiments", body)
    with httpx.Client(
        base_url=f"{server.url}/apis/runyard.dev/v1/projects/{namespace}",
        headers={"Authorization": f"Bearer {server.token}"},
    ) as api:
        got = api.get("/experiments/from-kubectl")
        assert got.status_code == 200, got.text
        assert got.json()["spec"]["command"] == body["spec"]["command"]
        assert got.json()["metadata"]["project"] == namespace
        assert api.get("/experiments/none").status_code == 404
        # deleting through the API deletes the custom resource
        assert api.delete("/experiments/from-kubectl").status_code == 200
    with pytest.raises(client.ApiException) as gone:
        _objects(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, "experiments", "from-kubectl")
    assert gone.value.status == 404


def test_a_write_based_on_a_stale_version_is_refused_with_409(server, kube):
    with server.api() as api:
        created = api.put("/experiments/v", json=yaml.safe_load(experiment_yaml("v")))
        assert created.status_code == 201, created.text
        doc = created.json()
        _objects(kube).patch_namespaced_custom_object(
            GROUP, VERSION, "default", "experiments", "v", {"metadata": {"labels": {"by": "kubectl"}}}
        )
        stale = {k: doc[k] for k in ("apiVersion", "kind", "metadata", "spec")}
        stale["metadata"]["labels"] = {"by": "api"}
        refused = api.put("/experiments/v", json=stale)
        assert refused.status_code == 409, refused.text
        assert "read it again" in refused.json()["error"]["message"]
    kept = _objects(kube).get_namespaced_custom_object(GROUP, VERSION, "default", "experiments", "v")
    assert kept["metadata"]["labels"] == {"by": "kubectl"}


def test_a_watch_through_the_api_streams_what_kubectl_changes(server, kube):
    with server.api() as api:
        listed = api.get("/experiments").json()
        lines: list[dict] = []

        def follow() -> None:
            params = {"watch": "true", "since": str(listed["metadata"]["revision"])}
            with api.stream("GET", "/experiments", params=params, timeout=30) as stream:
                for line in stream.iter_lines():
                    lines.append(json.loads(line))
                    if len(lines) == 2:
                        return

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        body = yaml.safe_load(experiment_yaml("watched"))
        body["metadata"]["namespace"] = "default"
        _objects(kube).create_namespaced_custom_object(GROUP, VERSION, "default", "experiments", body)
        _objects(kube).delete_namespaced_custom_object(GROUP, VERSION, "default", "experiments", "watched")
        until(lambda: len(lines) == 2, "the watch streamed the create and the delete", timeout=20)
        watcher.join(5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "watched"),
        ("DELETED", "watched"),
    ]
    assert lines[0]["revision"] < lines[1]["revision"]


def test_a_projects_first_object_through_the_api_makes_its_namespace(server, kube):
    with httpx.Client(
        base_url=f"{server.url}/apis/runyard.dev/v1/projects/team-b",
        headers={"Authorization": f"Bearer {server.token}"},
    ) as api:
        doc = yaml.safe_load(experiment_yaml("first"))
        created = api.put("/experiments/first", json=doc)
        assert created.status_code == 201, created.text
    namespace = client.CoreV1Api(kube.api_client).read_namespace("team-b")
    assert namespace.metadata.labels["runyard.dev/project"] == "team-b"
    assert namespace.metadata.labels["app.kubernetes.io/managed-by"] == "runyard"
    got = _objects(kube).get_namespaced_custom_object(GROUP, VERSION, "team-b", "experiments", "first")
    assert got["spec"]["command"] == doc["spec"]["command"]


def test_a_watch_from_a_revision_the_cluster_no_longer_keeps_ends_with_410(server, kube):
    if kube.emulator is None:
        pytest.skip("compacting the history is the emulator's control")
    with server.api() as api:
        old = api.get("/experiments").json()["metadata"]["revision"]
        for name in ("a", "b"):
            assert (
                api.put(f"/experiments/{name}", json=yaml.safe_load(experiment_yaml(name))).status_code == 201
            )
        kube.emulator.compact()
        rest = Rest(server.url, token=server.token, project="default")
        with pytest.raises(Gone, match="list again"):
            next(rest.watch("experiments", since=old))


def test_an_experiment_applied_with_the_cli_runs_as_a_pod_and_its_logs_come_through_the_api(
    server, kube, tmp_path
):
    """The whole path on a cluster: `runyard apply` through the server, the operator (in this process)
    makes the Run and its Pod, a fake kubelet runs it (the emulator has none: it writes the pod's status and
    answers pods/log), `runyard logs --follow` streams the pod's log through the server until the Run ends,
    and kubectl and the API see the Experiment Succeeded."""
    if kube.emulator is None:
        pytest.skip("plays the kubelet")
    from tests.kube_operator.harness import Kubelet, operator, wait_for

    log = {"text": ""}
    pod_log = "/api/v1/namespaces/default/pods/logged-1/log"
    kube.emulator[lambda req: req.url.path == pod_log] << (lambda request: log["text"].encode())
    project = tmp_path / "project"
    project.mkdir()
    (project / "exp.yaml").write_text(experiment_yaml("logged", "python train.py"))
    kubelet = Kubelet(kube.api_client)
    with operator(kube, "default", tmp_path / "operator"):
        assert runyard_cli("apply", "-f", "exp.yaml", env=server.env(), cwd=project).returncode == 0
        core = client.CoreV1Api(kube.api_client)
        pod = wait_for("the run's pod", lambda: core.list_namespaced_pod("default").items)[0]
        assert pod.metadata.name == "logged-1"
        kubelet.running("default", "logged-1")
        log["text"] = "2026-12-02T08:00:01Z epoch 1\n"
        follower = subprocess.Popen(
            [sys.executable, "-m", "runyard", "logs", "logged", "--follow"],
            env=server.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        assert follower.stdout.readline().rstrip("\n").endswith("epoch 1")
        log["text"] += "2026-12-02T08:00:02Z done\n"
        kubelet.exited("default", "logged-1", 0)
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
        assert out.rstrip("\n").endswith("done")
        with server.api() as api:
            phase = lambda: api.get("/experiments/logged").json().get("status", {}).get("phase")  # noqa: E731
            wait_for("the experiment to succeed", lambda: phase() == "Succeeded")
    got = _objects(kube).get_namespaced_custom_object(GROUP, VERSION, "default", "experiments", "logged")
    assert got["status"]["phase"] == "Succeeded"


def test_runyard_stop_through_the_server_cancels_the_runs_pod(server, kube, tmp_path):
    """`runyard stop` on a cluster: the server sets the Run's stopRequested, the operator (in this process)
    stops its pod (one on no node is deleted) and the Run and its Experiment end Cancelled. The kubelet is
    played by the test (the emulator has none)."""
    if kube.emulator is None:
        pytest.skip("plays the kubelet")
    from tests.kube_operator.harness import Kubelet, operator, wait_for

    with operator(kube, "default", tmp_path / "operator"), server.api() as api:
        assert api.put("/experiments/long", json=yaml.safe_load(experiment_yaml("long"))).status_code == 201
        core = client.CoreV1Api(kube.api_client)
        wait_for("the run's pod", lambda: core.list_namespaced_pod("default").items)
        Kubelet(kube.api_client).running("default", "long-1")
        phase = lambda kind: api.get(f"/{kind}/long").json().get("status", {}).get("phase")  # noqa: E731
        wait_for("the run running", lambda: phase("runs") == "Running")
        stopped = runyard_cli("stop", "long", env=server.env())
        assert stopped.returncode == 0, stopped.stderr
        wait_for("the experiment cancelled", lambda: phase("experiments") == "Cancelled")
        assert api.get("/runs/long").json()["spec"]["stopRequested"] is True
        assert api.get("/runs/long").json()["status"]["reason"] == "Stopped"
        assert core.list_namespaced_pod("default").items == []


class _Jupyter(BaseHTTPRequestHandler):
    """Stands in for a session's Jupyter server behind its Service: answers /api/status to its token only."""

    token = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        ok = self.headers.get("Authorization") == f"token {self.token}"
        body = json.dumps({"started": "now", "path": self.path} if ok else {"message": "bad token"}).encode()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cluster_session_is_reached_through_the_servers_proxy_and_its_use_reaches_its_status(server, kube):
    """The proxy on a cluster: it forwards to the session's Service (its cluster IP) with the Jupyter token
    from the Secret the operator named on the Session, and writes the session's last activity into its
    status, where the operator reclaims idle sessions. The test plays the operator (the Secret, the Service,
    the Session's status) and the session's Jupyter (a small HTTP server on loopback, the Service's
    cluster IP here)."""
    if kube.emulator is None:
        pytest.skip("plays the operator and Jupyter on loopback")
    jupyter = ThreadingHTTPServer(("127.0.0.1", 0), _Jupyter)
    _Jupyter.token = "jupyter-secret"
    threading.Thread(target=jupyter.serve_forever, daemon=True).start()
    core = client.CoreV1Api(kube.api_client)
    try:
        with server.api() as api:
            session = {"apiVersion": "runyard.dev/v1", "kind": "Session", "metadata": {"name": "nb"}}
            assert api.put("/sessions/nb", json={**session, "spec": {}}).status_code == 201
            before = api.get("/sessions/nb")
            assert before.json()["status"].get("lastActivity") is None
        token = base64.b64encode(b"jupyter-secret").decode()
        core.create_namespaced_secret(
            "default", {"metadata": {"name": "nb-jupyter"}, "data": {"token": token}}
        )
        # A Model named nb holds the Service "nb" (its URL): a Session's is another, and must be its own.
        service = {
            "metadata": {"name": session_service_name("nb")},
            "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": 8888}]},
        }
        core.create_namespaced_service("default", service)
        objects = _objects(kube)
        annotation = {"metadata": {"annotations": {"runyard.dev/session-token-secret": "nb-jupyter"}}}
        objects.patch_namespaced_custom_object(GROUP, VERSION, "default", "sessions", "nb", annotation)
        status = {"status": {"phase": "Running", "port": jupyter.server_address[1], "run": "nb-abc"}}
        objects.patch_namespaced_custom_object_status(GROUP, VERSION, "default", "sessions", "nb", status)

        url = f"{server.url}/sessions/default/nb/api/status"
        bearer = {"Authorization": f"Bearer {server.token}"}
        unowned = httpx.get(url, headers=bearer, timeout=30)
        assert unowned.status_code == 409 and "earlier session" in unowned.text, unowned.text
        owner = {
            "apiVersion": "runyard.dev/v1",
            "kind": "Session",
            "name": "nb",
            "uid": before.json()["metadata"]["uid"],
        }
        core.patch_namespaced_service(
            session_service_name("nb"), "default", {"metadata": {"ownerReferences": [owner]}}
        )
        answer = httpx.get(url, headers=bearer, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["path"] == "/sessions/default/nb/api/status"
        assert (
            httpx.get(url, timeout=30).status_code == 401
        )  # no token: the proxy refuses, Jupyter is never asked

        def activity() -> str | None:
            got = objects.get_namespaced_custom_object(GROUP, VERSION, "default", "sessions", "nb")
            return got["status"].get("lastActivity")

        until(activity, "the proxy wrote the session's last activity into its status", timeout=20)
    finally:
        jupyter.shutdown()


def test_runyard_jobs_trigger_on_a_cluster_makes_one_run_per_request_key(server, kube):
    """`runyard jobs trigger` (the API's trigger) on a cluster: the Run is made in the cluster with the
    parameters in its environment, owned by the Job; the same request key gives back that run; Forbid with
    a run still active refuses, naming it."""
    job = {
        "apiVersion": "runyard.dev/v1",
        "kind": "Job",
        "metadata": {"name": "nightly"},
        "spec": {"concurrencyPolicy": "Forbid", "template": {"command": "python etl.py"}},
    }
    with server.api() as api:
        assert api.put("/jobs/nightly", json=job).status_code == 201
        key = {"Idempotency-Key": "k-1"}
        first = api.post("/jobs/nightly/trigger", json={"params": {"DAY": "2026-12-01"}}, headers=key)
        assert first.status_code == 201, first.text
        again = api.post("/jobs/nightly/trigger", json={"params": {"DAY": "2026-12-01"}}, headers=key)
        assert again.status_code == 200 and again.json()["metadata"]["uid"] == first.json()["metadata"]["uid"]
        refused = api.post("/jobs/nightly/trigger", headers={"Idempotency-Key": "k-2"})
        assert refused.status_code == 409
        assert first.json()["metadata"]["name"] in refused.json()["error"]["message"]
    name = first.json()["metadata"]["name"]
    run = _objects(kube).get_namespaced_custom_object(GROUP, VERSION, "default", "runs", name)
    assert run["spec"]["env"] == {"DAY": "2026-12-01"}
    assert run["metadata"]["labels"]["runyard.dev/job"] == "nightly"
    assert [o["kind"] for o in run["metadata"]["ownerReferences"]] == ["Job"]
    runs = _objects(kube).list_namespaced_custom_object(GROUP, VERSION, "default", "runs")["items"]
    assert len(runs) == 1

    # A Run that only carries a job's label (not owned by it) is none of its: Forbid does not count it.
    stray = {
        "apiVersion": "runyard.dev/v1",
        "kind": "Run",
        "metadata": {"name": "stray", "labels": {"runyard.dev/job": "lonely"}},
        "spec": {"command": "sleep 60"},
    }
    _objects(kube).create_namespaced_custom_object(GROUP, VERSION, "default", "runs", stray)
    with server.api() as api:
        assert api.put("/jobs/lonely", json={**job, "metadata": {"name": "lonely"}}).status_code == 201
        triggered = api.post("/jobs/lonely/trigger", headers={"Idempotency-Key": "k-3"})
        assert triggered.status_code == 201, triggered.text


def test_runyard_models_rollback_on_a_cluster_sets_the_models_spec_there(server, kube):
    """`runyard models rollback` on a cluster: the Model's spec in the cluster becomes the one the version was
    made from (its controller then rolls the Deployment back); a version it never had is a 409 naming those
    it has. The test writes the versions into the status as the models controller records them."""
    model = {"apiVersion": "runyard.dev/v1", "kind": "Model", "metadata": {"name": "clf"}}
    with server.api() as api:
        created = api.put("/models/clf", json={**model, "spec": {"handler": "predict:v2", "replicas": 3}})
        assert created.status_code == 201, created.text
        at = "2026-12-02T08:00:00Z"
        versions = [
            {"version": n, "specHash": f"h{n}", "spec": {"handler": f"predict:v{n}"}, "createdAt": at}
            for n in (1, 2)
        ]
        _objects(kube).patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", "models", "clf", {"status": {"versions": versions}}
        )
        rolled = api.post("/models/clf/rollback", json={"version": 1})
        assert rolled.status_code == 200, rolled.text
        missing = api.post("/models/clf/rollback", json={"version": 9})
        assert missing.status_code == 409 and "its versions: 1, 2" in missing.json()["error"]["message"]
    stored = _objects(kube).get_namespaced_custom_object(GROUP, VERSION, "default", "models", "clf")
    assert stored["spec"]["handler"] == "predict:v1"
    assert stored["spec"]["replicas"] == 3  # the scaling stays as it is


def test_an_objects_events_on_a_cluster_are_its_kubernetes_events(server, kube):
    """`runyard describe` and GET …/events on a cluster list the Events the operator recorded on the object
    (kubectl describe's), oldest first; an earlier object of that name's are not its."""
    experiment = {"apiVersion": "runyard.dev/v1", "kind": "Experiment", "metadata": {"name": "evented"}}
    with server.api() as api:
        assert (
            api.put("/experiments/evented", json={**experiment, "spec": {"command": "true"}}).status_code
            == 201
        )
        res = Experiment.model_validate(api.get("/experiments/evented").json())
        earlier = res.model_copy(
            update={"metadata": res.metadata.model_copy(update={"uid": "an-earlier-uid"})}
        )
        record_event(kube.api_client, earlier, "Stale", "of the experiment deleted before", "Normal")
        record_event(kube.api_client, res, "RunCreated", "run evented-1 created", "Normal")
        record_event(kube.api_client, res, "QuotaExceeded", "waiting for the project's quota", "Warning")
        listed = api.get("/experiments/evented/events")
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [(e["type"], e["reason"]) for e in items] == [
            ("Normal", "RunCreated"),
            ("Warning", "QuotaExceeded"),
        ]
        assert {(e["kind"], e["name"]) for e in items} == {("Experiment", "evented")}
        assert api.get("/experiments/nothing/events").status_code == 404
    described = runyard_cli("describe", "experiment", "evented", env=server.env())
    assert described.returncode == 0, described.stderr
    assert "QuotaExceeded" in described.stdout and "waiting for the project's quota" in described.stdout
    assert "Stale" not in described.stdout


def test_model_keys_on_a_cluster_open_their_model_and_not_one_made_again_under_its_name(server, kube):
    """A key is made, listed and revoked for a Model in the cluster, and the access check a replica asks
    (GET …/access with the caller's credential) lets it in. Deleting the Model deletes none of its keys
    there (kubectl may delete it), so a Model made again under the name must refuse them: its uid differs."""
    model = {"apiVersion": "runyard.dev/v1", "kind": "Model", "metadata": {"name": "scorer"}}
    body = {**model, "spec": {"handler": "predict:predict"}}

    def access(api: httpx.Client, credential: str) -> int:
        return api.get("/models/scorer/access", headers={"Authorization": f"Bearer {credential}"}).status_code

    with server.api() as api:
        assert api.put("/models/scorer", json=body).status_code == 201
        made = api.post("/models/scorer/keys", json={"description": "the shop"})
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["id"]
        assert [k["id"] for k in api.get("/models/scorer/keys").json()["items"]] == [key_id]
        assert access(api, key) == 204 and access(api, server.token) == 204
        assert access(api, "rym_" + "x" * 43) == 401
        other = api.post("/models/scorer/keys", json={"description": "to revoke"}).json()
        assert api.delete(f"/models/scorer/keys/{other['id']}").status_code == 204
        assert access(api, other["key"]) == 401

        _objects(kube).delete_namespaced_custom_object(GROUP, VERSION, "default", "models", "scorer")
        until(lambda: api.get("/models/scorer").status_code == 404, "the model deleted", timeout=20)
        assert api.put("/models/scorer", json=body).status_code == 201
        assert access(api, key) == 401  # a key of the Model deleted, not of this one
        assert api.get("/models/scorer/keys").json()["items"] == []
    assert access_of_missing(server) == 404


def access_of_missing(server: ServerProcess) -> int:
    with server.api() as api:
        return api.post("/models/nothing/keys", json={}).status_code
