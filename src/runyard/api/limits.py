"""Request body limits, enforced before a body is read whole: 413 in the API's error format.

A request may be larger than the object it carries may be (1.5 MiB, checked once parsed, with a 422
naming the field), as with Kubernetes' API server; snapshot manifests may list many files; blobs are
streamed to disk and bounded by the server's blob setting, artifacts by its artifact setting.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.api.errors import response
from runyard.core.errors import TooLarge

MAX_REQUEST_BYTES = 8 << 20
MAX_MANIFEST_BYTES = 16 << 20
MAX_SESSION_BYTES = 512 << 20  # Jupyter's own limit: a notebook or an upload through the session proxy


class BodyLimit:
    """Refuse a body over `limit_for(path)`: at once when Content-Length says so, else as it arrives."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await response(_too_large(limit), scope["path"])(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the request body is over the limit of {limit} bytes")


# Artifact uploads: MLflow's artifact API, and a run's artifacts under the runyard prefix.
ARTIFACT_PATH = re.compile(
    r"^/api/2\.0/mlflow-artifacts/artifacts/|^/apis/[^/]+/[^/]+/projects/[^/]+/runs/[^/]+/artifacts/"
)


def limits(max_blob_bytes: int, max_artifact_bytes: int) -> Callable[[str], int]:
    def limit_for(path: str) -> int:
        if ARTIFACT_PATH.match(path):
            return max_artifact_bytes
        if "/blobs/" in path:
            return max_blob_bytes
        if path.startswith("/sessions/"):
            return MAX_SESSION_BYTES
        if path.endswith("/snapshots"):
            return MAX_MANIFEST_BYTES
        return MAX_REQUEST_BYTES

    return limit_for
