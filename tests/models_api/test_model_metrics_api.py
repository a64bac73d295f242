"""The per-version metrics API, Prometheus's /metrics and rollback against a real server; and the
Prometheus exposition of figures (cumulative buckets, labels) parsed by prometheus_client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.models_api.models_api_support import apply_model, auth, token
from tests.support import ServerProcess, until

from runyard.services.model_metrics import histogram_buckets, version_doc
from runyard.serving.protocol import BUCKETS
from runyard.serving.state import VersionFigures

FIELDS = {"version", "requests", "errors", "errorRate", "p50Ms", "p95Ms", "p99Ms", "replicas"}
FIELDS |= {"readyReplicas", "inFlight"}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_prometheus_metrics_need_a_token_and_parse(srv: ServerProcess):
    apply_model(srv, "scraped")
    assert httpx.get(f"{srv.url}/metrics").status_code == 401
    answer = httpx.get(f"{srv.url}/metrics", headers=auth(srv.token))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = families(answer.text)
    for name in ("runyard_model_requests", "runyard_model_errors", "runyard_model_replicas"):
        assert found[name].documentation, name
    assert found["runyard_model_request_duration_seconds"].type == "histogram"
    viewer = httpx.get(f"{srv.url}/metrics", headers=auth(token(srv, "viewer", "default")))
    assert viewer.status_code == 200


def test_the_metrics_api_answers_per_version_and_names_a_missing_model(srv: ServerProcess):
    apply_model(srv, "measured")
    answer = srv.api().get("/models/measured/metrics")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "measured" and isinstance(body["versions"], list)
    for version in body["versions"]:
        assert set(version) == FIELDS
    missing = srv.api().get("/models/absent/metrics")
    assert missing.status_code == 404 and "'absent'" in missing.json()["error"]["message"]


def test_rollback_to_a_version_the_model_never_had_is_a_conflict_naming_them(srv: ServerProcess):
    apply_model(srv, "unrolled")
    answer = srv.api().post("/models/unrolled/rollback", json={"version": 42})
    assert answer.status_code == 409
    message = answer.json()["error"]["message"]
    assert "no version 42" in message and "its versions:" in message
    bad = srv.api().post("/models/unrolled/rollback", json={"version": 0})
    assert bad.status_code == 422 and "version" in bad.text
    viewer = auth(token(srv, "viewer", "default"))
    url = f"{srv.url}/apis/runyard.dev/v1/projects/default/models/unrolled/rollback"
    assert httpx.post(url, json={"version": 1}, headers=viewer).status_code == 403


def test_figures_become_cumulative_buckets_and_quantiles_in_milliseconds():
    fig = VersionFigures(version=3, requests=4, errors=1, replicas=2, ready_replicas=1, in_flight=1)
    fig.buckets[BUCKETS.index(0.001)] = 3
    fig.buckets[BUCKETS.index(0.1)] = 1
    fig.latency_sum = 0.103
    buckets = dict(histogram_buckets(fig))
    assert buckets["0.0005"] == 0 and buckets["0.001"] == 3 and buckets["0.075"] == 3
    assert buckets["0.1"] == 4 and buckets["+Inf"] == 4
    doc = version_doc(fig)
    assert doc["errorRate"] == 0.25 and doc["readyReplicas"] == 1 and doc["inFlight"] == 1
    assert 0.5 <= doc["p50Ms"] <= 1.0 and 75 <= doc["p99Ms"] <= 100
    assert version_doc(VersionFigures(version=1))["p50Ms"] is None


def test_a_rollback_changes_what_runs_and_keeps_how_many(srv: ServerProcess):
    """A version records what its replicas run, not their number: rolling back keeps the replicas (and the
    autoscaling) the model has now."""
    api = srv.api()
    apply_model(srv, "kept", replicas=0, env={"V": "1"})
    until(lambda: api.get("/models/kept").json()["status"].get("versions"), "no version 1")
    apply_model(srv, "kept", replicas=0, env={"V": "2"})
    until(lambda: len(api.get("/models/kept").json()["status"]["versions"]) == 2, "no version 2")
    answer = api.post("/models/kept/rollback", json={"version": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()["spec"]["env"] == {"V": "1"} and answer.json()["spec"]["replicas"] == 0
