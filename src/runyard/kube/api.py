"""The Kubernetes API as runyard uses it: one way to connect, the API's errors as runyard's, and a count of
calls by verb (what the operator's cost per Run is measured in).

The kubernetes package is imported inside the functions: `runyard` commands that never touch a cluster
should not pay for it.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from runyard.core.errors import (
    HTTP_STATUS,
    FieldError,
    Invalid,
    RunyardError,
    Unavailable,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from kubernetes.client.exceptions import ApiException

VERBS = ("list", "watch", "get", "create", "replace", "patch", "delete")


def connect(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """A client for the cluster: the pod's service account when running in one (and no kubeconfig is
    named), else the kubeconfig (KUBECONFIG or ~/.kube/config unless given) and its current or named
    context. Unavailable when neither works."""
    from kubernetes import client, config

    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError) as exc:
        raise Unavailable(f"cannot connect to Kubernetes: {exc}") from exc


# core.errors.HTTP_STATUS read the other way, plus what the API server says that runyard does not.
_BY_STATUS: dict[int, type[RunyardError]] = {
    **{status: cls for cls, status in HTTP_STATUS.items() if status < 500},  # 5xx: all Unavailable
    400: Invalid,
    429: Unavailable,
}


def translate(exc: ApiException) -> RunyardError:
    """The API server's Status as runyard's error: the same message, a 422's causes as field errors, 5xx,
    429 and no answer at all (status 0) as Unavailable, a status with no counterpart as RunyardError."""
    status = int(exc.status or 0)
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(exc.body) if exc.body else {}
        body = parsed if isinstance(parsed, dict) else {}
    except (TypeError, ValueError):
        pass
    message = body.get("message") or exc.reason or f"Kubernetes API error {status}"
    causes = (body.get("details") or {}).get("causes") or []
    details = [FieldError(c.get("field", ""), c.get("message") or c.get("reason", "")) for c in causes]
    cls = _BY_STATUS.get(status) or (Unavailable if status == 0 or status >= 500 else RunyardError)
    return cls(str(message), details)


@contextmanager
def translated() -> Iterator[None]:
    """Run API calls with their errors raised as runyard's: ApiException translated, a connection that
    failed or broke (urllib3's errors) as Unavailable."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise translate(exc) from exc
    except HTTPError as exc:
        raise Unavailable(f"the Kubernetes API did not answer: {exc}") from exc


def verb_of(method: str, url: str, query: dict[str, str]) -> str:
    """The API verb of one HTTP request: GET on a collection is list (watch with ?watch), on an object get."""
    method = method.upper()
    if method == "GET" and str(query.get("watch", "")).lower() in ("true", "1"):
        return "watch"
    parts = [p for p in urlsplit(url).path.split("/") if p]
    # /api/V/... or /apis/G/V/..., then namespaces/NS/ when namespaced (not for a Namespace's own
    # namespaces/NS[/status|finalize]).
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        rest = rest[2:]
    collection = len(rest) <= 1
    return {
        "GET": "list" if collection else "get",
        "POST": "create",
        "PUT": "replace",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method, method.lower())


class CallCounter:
    """API calls by verb (list, watch, get, create, replace, patch, delete), thread-safe.

    `instrument(api_client)` counts every request that client makes, whoever makes it (the store, the
    runtime, the operator, the watch's reconnections), so nobody has to remember to count.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, verb: str, n: int = 1) -> None:
        with self._lock:
            self._counts[verb] += n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self, *, exclude: tuple[str, ...] = ()) -> int:
        with self._lock:
            return sum(n for verb, n in self._counts.items() if verb not in exclude)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def instrument(self, api_client: ApiClient) -> ApiClient:
        """Count each request `api_client` makes from now on (once per counter however often called)."""
        counters: list[CallCounter] = api_client.__dict__.setdefault("_runyard_call_counters", [])
        if any(c is self for c in counters):
            return api_client
        counters.append(self)
        if len(counters) == 1:
            request = api_client.request

            def counted(method: str, url: str, query_params: Any = None, *args: Any, **kwargs: Any) -> Any:
                verb = verb_of(method, url, dict(query_params or []))
                for counter in counters:
                    counter.add(verb)
                return request(method, url, query_params, *args, **kwargs)

            api_client.request = counted
        return api_client
