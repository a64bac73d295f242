"""`runyard server`: the API server and the controller in one process, on the local runtime."""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from runyard.api.app import create_app
from runyard.api.deps import AppState
from runyard.controller.context import Context
from runyard.controller.jobs.scheduler import Scheduler
from runyard.controller.loop import Controller
from runyard.controller.session_support import SessionSupport
from runyard.core.errors import Unavailable
from runyard.runtime.base import Runtime
from runyard.runtime.local import LocalRuntime
from runyard.services.artifacts import ArtifactStore
from runyard.services.auth import ensure_admin_token
from runyard.services.environments import Environments
from runyard.services.job_notifications import NotificationSender
from runyard.services.node import Node
from runyard.services.notify import Notifier
from runyard.services.session_gateway import ActivityFlusher, SessionGateway
from runyard.services.session_secrets import load_key
from runyard.services.snapshots import BlobStore, snapshot_files
from runyard.services.tracking import Tracking
from runyard.serving.probe import Prober
from runyard.serving.state import Serving
from runyard.settings import (
    ControllerSettings,
    NotifySettings,
    RuntimeSettings,
    ServerSettings,
    ServingSettings,
)
from runyard.store import Store
from runyard.store.engine import normalize_url
from runyard.store.kube.resources import KubeResources
from runyard.store.lease import ControllerLock

log = logging.getLogger("runyard.server")


@dataclass
class Platform:
    state: AppState
    controller: Controller
    lock: ControllerLock

    def close(self) -> None:
        self.controller.stop()
        if self.state.environments:
            self.state.environments.close()
        self.state.runtime.close()
        if self.state.node:
            self.state.node.close()  # NVML's handle
        self.lock.release()
        self.state.store.close()


def build(
    settings: ServerSettings,
    controller: ControllerSettings,
    api_url: str,
    runtime_settings: RuntimeSettings | None = None,
    notify_settings: NotifySettings | None = None,
    serving_settings: ServingSettings | None = None,
) -> Platform:
    """Wire store, runtime and controller together; migrations run here, before anything is served."""
    home = settings.home
    runtime_settings = runtime_settings or RuntimeSettings()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Unavailable(
            f"cannot use {home} as the data directory: {exc.strerror}; choose another with --home"
        ) from None
    node = Node(runtime_settings)  # before the store: a node setting beyond the host stops the server
    store = _open_store(settings.resolved_store_url())
    lock = ControllerLock(store)
    lock.acquire()
    store.register_node(node.name, node.capacity)
    store.release_stale_allocations()  # what runs that ended while no server ran still held
    store.ensure_project("default")
    ensure_admin_token(store, home)
    blobs = BlobStore(home / "blobs", settings.max_blob_bytes)
    runtime = LocalRuntime(
        home,
        snapshot_files=lambda sid: snapshot_files(store, blobs, sid),
        sandbox=runtime_settings.sandbox,
        private_paths=_private_paths(settings, store),
    )
    notifier = Notifier()
    runtime.on_output(notifier.output)
    artifacts = ArtifactStore(settings.resolved_artifact_root(), settings.max_artifact_bytes)
    environments = Environments(store, home, blobs, notifier, runtime_settings)  # after the lock: see adopt
    ctx = Context(
        store,
        runtime,
        notifier,
        controller,
        api_url,
        artifacts,
        runtime_settings,
        environments=environments,
        node=node,
        workers=[NotificationSender(store, notify_settings or NotifySettings())],
    )
    ctx.scheduler = Scheduler(ctx)
    ctx.serving = Serving(serving_settings or ServingSettings())
    ctx.workers.append(Prober(ctx.serving, notifier.touch))
    key = load_key(home)
    kube = _kube(settings, api_url)
    gateway = SessionGateway(store, key, cluster=kube[0] if kube else None)
    if kube:  # the operator reclaims idle sessions from their status: the proxy's activity goes there
        ctx.workers.append(ActivityFlusher(gateway))
    ctx.sessions = SessionSupport(home / "sessions", key, api_url.rstrip("/"), activity=gateway.last_activity)
    state = AppState(
        store,
        kube[1] if kube else runtime,  # what the API reads runs' logs through
        blobs,
        notifier,
        Tracking(store),
        artifacts,
        environments=environments,
        node=node,
        scheduler=ctx.scheduler,
        serving=ctx.serving,
        sessions=gateway,
        kube=kube[0] if kube else None,
    )
    return Platform(state, Controller(ctx), lock)


def _kube(settings: ServerSettings, api_url: str) -> tuple[KubeResources, Runtime] | None:
    """With `--kubernetes`: the cluster's custom resources, where the kinds then live, and its runtime, that
    the API reads runs' logs through (the operator runs them; this server's controller finds none in the
    store to act on)."""
    if not settings.kubernetes:
        return None
    from runyard.kube.api import connect
    from runyard.runtime.kubernetes.runtime import KubernetesRuntime, RuntimeOptions

    api_client = connect(settings.kubeconfig, settings.kube_context)
    logs = KubernetesRuntime(
        api_client, RuntimeOptions(image="", server_url=api_url), settings.home / "kube-logs"
    )
    return KubeResources(api_client), logs


def _private_paths(settings: ServerSettings, store: Store) -> list[str]:
    """Server state that may be kept outside the data directory (a SQLite file, an artifact folder), which a
    sandboxed run must not see either."""
    paths = []
    if store.is_sqlite and store.engine.url.database:
        paths.append(str(Path(store.engine.url.database).absolute()))
    root = settings.resolved_artifact_root()
    if "://" not in root:
        paths.append(str(Path(root).absolute()))
    return paths


def _open_store(url: str) -> Store:
    try:
        return Store(url)
    except SQLAlchemyError as exc:
        shown = make_url(normalize_url(url)).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise Unavailable(f"cannot open the store {shown}: {reason}") from None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(
            f"cannot listen on {host}:{port}: {exc.strerror}; is another server running there? "
            "Choose another --port (0 picks a free one)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _client_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _write_server_file(home: Path, url: str) -> Path:
    path = home / "server.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(path)
    return path


def serve(
    settings: ServerSettings, controller: ControllerSettings, runtime_settings: RuntimeSettings | None = None
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = _bind(settings.host, settings.port)
    url = _client_url(settings.host, sock.getsockname()[1])
    platform = build(settings, controller, settings.public_url or url, runtime_settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(platform.state),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=3,  # log followers would otherwise hold a shutdown open
        )
    )
    platform.controller.start()
    server_file = _write_server_file(settings.home, url)
    log.info(
        "runyard server listening on %s (store %s, home %s)",
        url,
        platform.state.store.engine.url.render_as_string(hide_password=True),
        settings.home,
    )
    try:
        server.run(sockets=[sock])
    finally:
        platform.close()
        try:
            if json.loads(server_file.read_text()).get("pid") == os.getpid():
                server_file.unlink()
        except (OSError, ValueError):
            pass
