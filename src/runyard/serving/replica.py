"""A model's replica: `python -m runyard.serving.replica`, run as a Run of the Model (see protocol.py).

It loads the model first (its admin socket answers /ready 503 meanwhile), then accepts on the model's
listening socket (fd LISTEN_FD, shared with every other replica, so connections go to loaded replicas
only) and answers:
  POST /invocations, POST /predict  the model: JSON in, JSON out; needs a model key or an API token
  GET /health (also /ping)          liveness, no credential
Errors are JSON {"error": {"code", "message"}}: invalid JSON 400, input the model rejects (ValueError,
TypeError, KeyError) 422, anything else the model raises 500 (its traceback goes to stderr, the run's
log); the replica stays up. SIGTERM drains: see HttpServer.drain. Standard library only, but uvloop is used
when the environment has it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from runyard.serving import protocol
from runyard.serving.http import HttpServer, Request, Response, error_body
from runyard.serving.replica_admin import AdminServer, Metrics
from runyard.serving.replica_auth import MISSING, AccessCheck, credential
from runyard.serving.replica_model import InvalidInput, RawResponse, is_async, load

MAX_BODY = 32 * 1024 * 1024
PREDICT_PATHS = frozenset(("/invocations", "/predict"))
HEALTH_PATHS = frozenset(("/health", "/ping"))
HEALTHY = (200, b'{"status":"ok"}')
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_decode = json.JSONDecoder().decode
_clock = time.perf_counter


class Config:
    """The replica's settings, from its environment; a missing or bad one names the variable."""

    def __init__(self, env: dict[str, str]) -> None:
        def need(name: str) -> str:
            value = env.get(name)
            if not value:
                raise SystemExit(f"replica: {name} is not set")
            return value

        self.listen_fd = int(env.get(protocol.ENV_LISTEN_FD) or protocol.LISTEN_FD)
        self.model = need(protocol.ENV_MODEL)
        self.version = env.get(protocol.ENV_VERSION, "")
        self.handler = env.get(protocol.ENV_HANDLER) or None
        self.source = env.get(protocol.ENV_SOURCE) or None
        if not self.handler and not self.source:
            raise SystemExit(f"replica: set {protocol.ENV_HANDLER} or {protocol.ENV_SOURCE}")
        self.api_url = need("RUNYARD_API_URL")
        self.project = need("RUNYARD_PROJECT")
        self.admin = protocol.admin_socket(need("RUNYARD_RUN_UID"), int(env.get("RUNYARD_ATTEMPT") or 1))
        self.auth_ttl = _number(env, protocol.ENV_AUTH_CACHE, 5.0)
        self.log_sample = min(1.0, max(0.0, _number(env, protocol.ENV_LOG_SAMPLE, 0.0)))


def _number(env: dict[str, str], name: str, default: float) -> float:
    value = env.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"replica: {name}: not a number: {value!r}") from None


class Replica:
    """The request path: credential, JSON, the model, JSON; counted and timed."""

    def __init__(self, config: Config, model: Callable[[Any], Any], metrics: Metrics, access: AccessCheck):
        self.config = config
        self.model = model
        self.model_async = is_async(model)
        self.metrics = metrics
        self.access = access

    def __call__(self, request: Request) -> Response | Any:
        path = request.path
        if path in PREDICT_PATHS:
            if request.method != "POST":
                return 405, error_body("method_not_allowed", f"{path} takes POST")
            start = _clock()
            metrics = self.metrics
            metrics.in_flight += 1
            metrics.last_request = time.time()
            cred = credential(request.headers)
            answer = MISSING if cred is None else self.access.cached(cred)
            if answer is None:
                return self._checked(request, cred, start)  # type: ignore[arg-type]
            if answer[0] != 204:
                return self._finish(request, answer, start)
            if self.model_async:
                return self._predict_async(request, start)
            return self._finish(request, self._predict(request.body), start)
        if path in HEALTH_PATHS:
            return HEALTHY
        return 404, error_body("not_found", f"no {request.method} {path} here: POST /invocations or /predict")

    def _finish(self, request: Request, response: Response, start: float) -> Response:
        metrics = self.metrics
        metrics.in_flight -= 1
        metrics.record(_clock() - start, response[0] >= 400)
        if self.config.log_sample and random.random() < self.config.log_sample:
            self._log(request, response, _clock() - start)
        return response

    async def _checked(self, request: Request, cred: str, start: float) -> Response:
        try:
            answer = await self.access.check(cred)
            if answer[0] != 204:
                return self._finish(request, answer, start)
            if self.model_async:
                return await self._predict_async(request, start)
            return self._finish(request, self._predict(request.body), start)
        except BaseException:
            self.metrics.in_flight -= 1
            raise

    def _predict(self, body: bytes) -> Response:
        try:
            payload = _decode(body.decode())
        except ValueError as e:  # UnicodeDecodeError is one too
            return 400, error_body("invalid_json", f"the body is not valid JSON: {e}")
        try:
            return self._encode(self.model(payload))
        except Exception as e:
            return _model_error(e)

    async def _predict_async(self, request: Request, start: float) -> Response:
        try:
            payload = _decode(request.body.decode())
        except ValueError as e:
            response = 400, error_body("invalid_json", f"the body is not valid JSON: {e}")
        else:
            try:
                response = self._encode(await self.model(payload))
            except Exception as e:
                response = _model_error(e)
        return self._finish(request, response, start)

    @staticmethod
    def _encode(result: Any) -> Response:
        if isinstance(result, RawResponse):
            return 200, result
        try:
            return 200, _dumps(result).encode()
        except (TypeError, ValueError) as e:
            return 500, error_body("bad_output", f"the model's answer is not JSON-serializable: {e}")

    def _log(self, request: Request, response: Response, seconds: float) -> None:
        """One sampled request and its response, as a JSON line on stdout (the run's log)."""
        record = {
            "type": "model_request",
            "time": datetime.now(UTC).isoformat(),
            "model": self.config.model,
            "version": self.config.version,
            "path": request.path,
            "status": response[0],
            "latency_ms": round(seconds * 1000, 3),
            "request": _as_json(request.body),
            "response": _as_json(response[1]),
        }
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def _as_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def _model_error(e: Exception) -> Response:
    message = f"{type(e).__name__}: {e}"
    if isinstance(e, (InvalidInput, ValueError, TypeError, KeyError)):
        return 422, error_body("invalid_input", message)
    traceback.print_exc()
    return 500, error_body("model_error", message)


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(config: Config, replica: Replica, admin: AdminServer) -> None:
    metrics = replica.metrics
    server = HttpServer(replica, MAX_BODY, on_refused=lambda status: metrics.record(0.0, True))
    listener = socket.socket(fileno=config.listen_fd)
    await server.start(listener)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    admin.ready = True
    print(f"replica of model {config.model} version {config.version} ready", flush=True)
    await stop.wait()
    admin.ready = False
    print("draining: finishing the requests in flight", flush=True)
    await server.drain()
    replica.access.close()


def main() -> None:
    config = Config(dict(os.environ))
    metrics = Metrics()
    admin = AdminServer(config.admin, metrics)
    admin.start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # stopped while loading: nothing to drain yet
    model = load(config.handler, config.source)
    access = AccessCheck(config.api_url, config.project, config.model, config.auth_ttl)
    loop = _event_loop()
    try:
        loop.run_until_complete(serve(config, Replica(config, model, metrics, access), admin))
    finally:
        admin.close()
        loop.close()
    print("drained", flush=True)


if __name__ == "__main__":
    main()
