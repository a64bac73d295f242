"""The public SDK surface is pinned: `runyard.__all__`, the Client's methods, and a cheap `import runyard`."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from tests.cli.helpers import ScriptedServers

import runyard
from runyard.client import Client
from runyard.core.errors import Invalid, Unavailable

CLIENT_METHODS = {
    "apply",
    "apply_result",
    "artifacts",
    "build_environment",
    "close",
    "create",
    "create_model_key",
    "delete",
    "deploy",
    "download_artifacts",
    "environment",
    "environments",
    "events",
    "get",
    "health",
    "job_history",
    "job_schedule",
    "list",
    "logs",
    "metric_history",
    "metrics",
    "model_keys",
    "model_metrics",
    "nodes",
    "predict",
    "remove_environment",
    "revoke_model_key",
    "rollback",
    "run",
    "runs",
    "search_runs",
    "stop",
    "tracking",
    "trigger",
    "upload_snapshot",
    "usage",
    "wait",
    "watch",
    "whoami",
}


def test_the_package_exports_exactly_the_client_the_version_and_the_tracking_functions():
    tracking = ["log_artifact", "log_artifacts", "log_metric", "log_metrics", "log_param", "log_params"]
    assert runyard.__all__ == ["Client", "__version__", *tracking, "set_tag", "set_tags", "start_run"]
    assert runyard.__version__ == "0.1.0"
    assert runyard.Client is Client


def test_the_client_has_exactly_these_public_methods():
    public = {name for name, _ in inspect.getmembers(Client, inspect.isfunction) if not name.startswith("_")}
    assert public == CLIENT_METHODS


def test_importing_runyard_loads_neither_httpx_nor_pydantic():
    code = "import sys, runyard; print(sorted(m for m in ('httpx', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_cli_and_the_sdk_import_no_third_party_http_models_or_rich():
    """What `runyard ps` and `runyard run` load: the standard library and click, nothing heavier; the SDK
    loads its models (pydantic) on the first typed answer."""
    heavy = ("httpx", "pydantic", "rich", "typer", "yaml", "pathspec", "psutil", "runyard.core.resources")
    code = (
        "import sys, runyard.client, runyard.rest, runyard.upload, runyard.cli.main; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_a_url_the_client_says_how_to_get_a_server(monkeypatch):
    monkeypatch.delenv("RUNYARD_API_URL", raising=False)
    with pytest.raises(Unavailable, match="RUNYARD_API_URL"):
        Client()


def test_settings_come_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("RUNYARD_API_URL", "http://example.test/")
    monkeypatch.setenv("RUNYARD_TOKEN", "t0k")
    monkeypatch.setenv("RUNYARD_PROJECT", "vision")
    client = Client()
    assert (client.url, client.token, client.project) == ("http://example.test", "t0k", "vision")


@pytest.fixture
def scripted() -> Iterator[Callable[..., str]]:
    with ScriptedServers() as start:
        yield start


def test_an_error_body_becomes_the_matching_error_with_its_details(scripted):
    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
        details = [{"field": "spec.command", "reason": "must not be empty"}]
        return 422, {"error": {"code": "Invalid", "message": "the resource is invalid", "details": details}}

    client = Client(scripted(answer), "t")
    with pytest.raises(Invalid) as caught:
        client.get("experiments", "train")
    assert caught.value.details[0].field == "spec.command"


def test_an_unreachable_server_is_unavailable_with_a_hint():
    client = Client("http://127.0.0.1:1", "t", timeout=2)
    with pytest.raises(
        Unavailable, match=r"cannot reach the runyard server at http://127.0.0.1:1.*runyard server"
    ):
        client.whoami()


DOC = {
    "apiVersion": "runyard.dev/v1",
    "kind": "Experiment",
    "metadata": {"name": "t"},
    "spec": {"command": "1"},
}


def test_create_is_retried_once_after_a_5xx_with_the_same_idempotency_key(scripted):
    seen: list[tuple[str | None, str | None]] = []

    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
        seen.append((headers.get("Idempotency-Key"), headers.get("Authorization")))
        if len(seen) == 1:
            return 503, {"error": {"code": "Unavailable", "message": "busy"}}
        return 201, DOC

    client = Client(scripted(answer), "secret")
    created = client.create(DOC, idempotency_key="k-1")
    assert created.metadata.name == "t"
    assert seen == [("k-1", "Bearer secret"), ("k-1", "Bearer secret")]


def test_a_kept_alive_connection_the_server_has_closed_is_replaced_without_an_error(scripted):
    calls: list[str] = []

    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
        calls.append(path)
        return 200, DOC

    client = Client(scripted(answer, drop_kept_alive=True), "t")
    assert [client.get("experiments", "t").metadata.name for _ in range(3)] == ["t", "t", "t"]
    assert len(calls) == 3


def test_the_cheap_kind_table_agrees_with_the_models():
    """Clients resolve kinds without importing the models; the two tables must never drift apart."""
    from runyard.core.kinds import KINDS
    from runyard.core.resources import ALL_KINDS

    assert {k.name: k.plural for k in KINDS} == {name: cls.plural for name, cls in ALL_KINDS.items()}
