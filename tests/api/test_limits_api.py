"""Input bounds over HTTP: every input is validated before the store, and only an outage is a 503."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from tests.support import API, experiment, postgres_url, resource

from runyard.store.errors import is_outage

MiB = 1 << 20


def fields(r) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {d["field"]: d["reason"] for d in r.json()["error"]["details"]}


def test_a_5_mb_command_is_refused_naming_the_field(server):
    api = server.api()
    r = api.put("/experiments/huge", json=experiment("huge", "echo " + "x" * 5_000_000))
    assert "exec accepts at most" in fields(r)["spec.command"]
    argv = ["echo"] + ["y" * 100_000] * 12  # each argument fits; together they are over 1 MiB
    assert "spec.command" in fields(api.put("/experiments/argv", json=experiment("argv", argv)))
    nul = experiment("nul", ["echo", "a\0b"])
    assert "NUL" in fields(api.put("/experiments/nul", json=nul))["spec.command"]
    env = experiment("env", "true", env={"BIG": "z" * 200_000})
    assert "spec.env" in fields(api.put("/experiments/env", json=env))
    job = resource("Job", "j", template={"command": "x" * 200_000})
    assert "spec.template.command" in fields(api.put("/jobs/j", json=job))
    assert api.get("/experiments").json()["items"] == []


def test_labels_and_annotations_follow_kubernetes_rules(server):
    api = server.api()
    cases = {
        "metadata.labels": [
            {"bad key!": "v"},
            {"k": "v" * 64},
            {"a/" + "b" * 64: "v"},
            {"Bad_Prefix/k": "v"},
        ],
        "metadata.annotations": [{"k": "v" * (256 * 1024)}, {"-k": "v"}],
    }
    for field, values in cases.items():
        for value in values:
            doc = experiment("l", "true")
            doc["metadata"][field.split(".")[1]] = value
            assert field in fields(api.put("/experiments/l", json=doc)), value
    good = experiment("l", "true")
    good["metadata"]["labels"] = {"example.com/team": "cv", "tier": "", "a.b_c-d": "X.y_z-1"}
    good["metadata"]["annotations"] = {"note": "anything at all, even\nnewlines"}
    assert api.put("/experiments/l", json=good).status_code == 201


def test_numbers_are_bounded_before_the_store(server):
    api = server.api()
    raw = json.dumps(experiment("n", "true", resources={"cpu": 1})).replace('"cpu": 1', '"cpu": 1e400')
    r = api.put("/experiments/n", content=raw, headers={"Content-Type": "application/json"})
    assert "spec.resources.cpu" in fields(r)
    r = api.put("/experiments/n", json=experiment("n", "true", timeoutSeconds=1e300))
    assert "spec.timeoutSeconds" in fields(r)
    r = api.put("/experiments/n", json=experiment("n", "true", resources={"memory": "99999999Ti"}))
    assert "spec.resources.memory" in fields(r)
    r = api.get("/experiments", params={"watch": "true", "since": 2**70})
    assert "since" in fields(r)
    doc = experiment("n", "true")
    doc["metadata"]["resourceVersion"] = 2**70
    assert "metadata.resourceVersion" in fields(api.put("/experiments/n", json=doc))


def test_a_body_over_the_limit_gets_413_before_it_is_read(server):
    api = server.api()
    body = b'{"pad": "' + b"x" * (9 * MiB) + b'"}'
    r = api.post("/experiments", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "TooLarge"

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(9):
            yield b"x" * MiB

    r = api.post("/experiments", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "TooLarge"


def test_an_object_over_1_5_mib_is_refused_naming_its_largest_part(server):
    doc = experiment("big", "true")
    doc["metadata"]["labels"] = {f"label-{i:06}": "v" * 40 for i in range(40_000)}  # each one is valid
    assert "1.5 MiB" in fields(server.api().put("/experiments/big", json=doc))["metadata"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_only_a_store_that_cannot_be_reached_counts_as_an_outage():
    """Real errors from a real PostgreSQL: a refused connection is an outage, a refused value is not."""
    with pytest.raises(DBAPIError) as refused:
        create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres").connect()
    assert is_outage(refused.value)
    engine = create_engine(postgres_url().replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn, pytest.raises(DBAPIError) as overflow:
        conn.execute(text("select cast(:n as bigint)"), {"n": str(2**70)})
    assert not is_outage(overflow.value)
    engine.dispose()


def test_a_nul_character_is_refused_wherever_it_hides(server):
    api = server.api()
    doc = experiment("nul", "true")
    doc["metadata"]["annotations"] = {"note": "a\0b"}
    doc["spec"]["environment"] = "x\0"
    found = fields(api.put("/experiments/nul", json=doc))
    assert "NUL" in found["metadata.annotations.note"] and "spec.environment" in found
    model = resource("Model", "m", modelUri="s3://bucket/\0")
    assert "NUL" in fields(api.put("/models/m", json=model))["spec.modelUri"]
    admin = httpx.Client(base_url=server.url + API, headers=api.headers)
    assert "name" in fields(admin.post("/tokens", json={"name": "ci\0", "role": "viewer"}))
