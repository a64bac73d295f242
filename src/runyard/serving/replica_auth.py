"""The replica's access check: it asks the server (GET .../models/{name}/access with the caller's credential
as the bearer) and remembers the answer by the credential's sha256, so that a known caller costs a hash and a
dict lookup. Allowed answers are kept `ttl` seconds, refusals 1 s. While the server cannot be reached, a
credential it allowed before stays allowed (the model keeps serving through a server restart); one never
seen gets 503. Standard library only; the HTTP call runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

NEGATIVE_TTL = 1.0
TIMEOUT = 10.0
ALLOWED: tuple[int, bytes] = (204, b"")

Answer = tuple[int, bytes]  # (204, b"") allowed; else the status and JSON body to answer the caller with


def _error(status: int, code: str, message: str) -> Answer:
    return status, json.dumps({"error": {"code": code, "message": message}}).encode()


MISSING = _error(
    401, "unauthenticated", "missing credential: send 'Authorization: Bearer <model key or API token>'"
)


def credential(headers: dict[str, str]) -> str | None:
    """The caller's model key or API token: `Authorization: Bearer X`, else `X-Runyard-Key: X`."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-runyard-key") or None


class AccessCheck:
    def __init__(self, api_url: str, project: str, model: str, ttl: float) -> None:
        url = urlsplit(api_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"RUNYARD_API_URL: not an http(s) URL: {api_url!r}")
        self._https = url.scheme == "https"
        self._netloc = url.netloc
        prefix = url.path.rstrip("/")
        self.path = f"{prefix}/apis/runyard.dev/v1/projects/{quote(project)}/models/{quote(model)}/access"
        self.ttl = ttl
        self.asked = 0  # calls to the server (cache misses), for tests and the curious
        self._cache: dict[bytes, tuple[float, Answer]] = {}  # digest -> (expires, answer)
        self._stale: dict[bytes, float] = {}  # digest -> when it was last allowed (kept for outages)
        self._pending: dict[bytes, asyncio.Future[Answer]] = {}
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="runyard-access")

    def cached(self, cred: str) -> Answer | None:
        """The remembered answer for `cred`, or None: ask with check()."""
        hit = self._cache.get(hashlib.sha256(cred.encode()).digest())
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def check(self, cred: str) -> Answer:
        """Ask the server (once for concurrent callers with the same credential)."""
        key = hashlib.sha256(cred.encode()).digest()
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fetch(key, cred))
            self._pending[key] = future
        return await asyncio.shield(future)

    async def _fetch(self, key: bytes, cred: str) -> Answer:
        try:
            loop = asyncio.get_running_loop()
            try:
                status, body = await loop.run_in_executor(self._pool, self._ask, cred)
            except (OSError, http.client.HTTPException) as e:
                if key in self._stale:  # allowed before: the server is restarting, keep serving
                    return ALLOWED
                return _error(503, "unavailable", f"could not check the credential with the server: {e}")
            now = time.monotonic()
            if status == 204:
                answer, expires = ALLOWED, now + self.ttl
                self._stale[key] = now
            elif status in (401, 403, 404):
                answer, expires = (status, self._json(status, body)), now + NEGATIVE_TTL
                self._stale.pop(key, None)
            else:
                return _error(503, "unavailable", f"the server answered {status} to the access check")
            if len(self._cache) > 100_000:  # bounded: a flood of made-up keys must not grow it forever
                self._cache.clear()
            self._cache[key] = (expires, answer)
            return answer
        finally:
            self._pending.pop(key, None)

    @staticmethod
    def _json(status: int, body: bytes) -> bytes:
        try:
            if isinstance(json.loads(body).get("error"), dict):
                return body
        except (ValueError, AttributeError):
            pass
        return _error(status, "forbidden" if status == 403 else "unauthenticated", "access refused")[1]

    def _ask(self, cred: str) -> Answer:
        """In a worker thread: one GET over this thread's kept-alive connection (retried once on a new
        connection, for one the server closed meanwhile)."""
        self.asked += 1
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                conn = self._local.conn = cls(self._netloc, timeout=TIMEOUT)
            try:
                conn.request("GET", self.path, headers={"Authorization": f"Bearer {cred}"})
                response = conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
