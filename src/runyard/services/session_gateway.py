"""Where the proxy forwards a Session's requests, and when it last forwarded any (for idle reclamation).

Both are answered from memory on the hot path: a kernel websocket message must not cost a store read,
so upstreams are cached for a moment (a restarted session's new port is seen within `ttl`; a connection
refused meanwhile makes the proxy `forget` it), and activity is kept in memory only (the controller
folds it into status.lastActivity)."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from runyard.core.errors import Conflict, RunyardError
from runyard.core.resources import Session
from runyard.runtime.kubernetes.pods import SESSION_TOKEN_ANNOTATION, TOKEN_KEY, session_service_name
from runyard.services.session_secrets import jupyter_token
from runyard.store import Store
from runyard.store.kube.resources import KubeResources

SERVING = ("Running", "Starting")


@dataclass(frozen=True)
class Upstream:
    port: int
    token: str  # the session run's Jupyter token
    session_uid: str
    host: str = "127.0.0.1"  # on a cluster: the session's Service


class SessionGateway:
    """`cluster`: the Sessions live in a cluster (`runyard server --kubernetes`); their upstreams are their
    Services, and activity is written into their status (flush_activity), where the operator reads it."""

    def __init__(self, store: Store, key: bytes, ttl: float = 2.0, cluster: KubeResources | None = None):
        self.store, self.key, self.ttl, self.cluster = store, key, ttl, cluster
        self._upstreams: dict[tuple[str, str], tuple[Upstream, float]] = {}
        self._activity: dict[str, float] = {}
        self._names: dict[str, tuple[str, str]] = {}  # session uid -> (project, name), for the flush
        self._flushed: dict[str, float] = {}

    def cached(self, project: str, name: str) -> Upstream | None:
        """The upstream if it was looked up a moment ago; None when the store must be read (`upstream`)."""
        hit = self._upstreams.get((project, name))
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def upstream(self, project: str, name: str) -> Upstream:
        """Where the session's Jupyter server listens; NotFound (no such session) or Conflict (not
        running). Reads the store on a cache miss: call it off the event loop."""
        up = self.cached(project, name)
        if up is not None:
            return up
        if self.cluster is not None:
            session = cast(Session, self.cluster.get(Session, project, name))
            _check_serving(session)
            up = cluster_upstream(self.cluster, session)
            self._names[session.uid] = (project, name)
        else:
            session = self.store.get(Session, project, name)
            _check_serving(session)
            assert session.status.port is not None and session.status.runUid is not None
            up = Upstream(session.status.port, jupyter_token(self.key, session.status.runUid), session.uid)
        self._upstreams[(project, name)] = (up, time.monotonic() + self.ttl)
        return up

    def forget(self, project: str, name: str) -> None:
        """Drop a cached upstream that did not answer: the session may have moved to a new run."""
        self._upstreams.pop((project, name), None)

    def touch(self, session_uid: str) -> None:
        self._activity[session_uid] = time.time()

    def last_activity(self, session_uid: str) -> datetime | None:
        """When the proxy last forwarded a request or message of this session (since this server started)."""
        seen = self._activity.get(session_uid)
        return None if seen is None else datetime.fromtimestamp(seen, UTC)

    def flush_activity(self) -> int:
        """On a cluster: write each session's last activity since the previous flush into its
        status.lastActivity (a merge patch of that field only), where the operator reclaims idle ones.
        Returns how many were written. Call it off the event loop, every few seconds."""
        if self.cluster is None:
            return 0
        written = 0
        for uid, seen in list(self._activity.items()):
            where = self._names.get(uid)
            if where is None or self._flushed.get(uid, 0.0) >= seen:
                continue
            at = datetime.fromtimestamp(seen, UTC).isoformat()
            try:
                self.cluster.patch_status(Session, *where, {"lastActivity": at})
            except RunyardError:  # deleted meanwhile, or the API away: the next flush tries again
                continue
            self._flushed[uid] = seen
            written += 1
        return written


class ActivityFlusher:
    """Calls gateway.flush_activity every `every` seconds (a controller worker, on a cluster)."""

    def __init__(self, gateway: SessionGateway, every: float = 5.0):
        self.gateway, self.every = gateway, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="runyard-session-activity", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.gateway.flush_activity()  # what came since the last flush

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.gateway.flush_activity()


def _check_serving(session: Session) -> None:
    st, name = session.status, session.metadata.name
    if st.phase not in SERVING or not st.port or not (st.runUid or st.run):
        state = "stopped" if session.spec.stopped else f"phase {st.phase or 'Pending'}"
        raise Conflict(
            f"session {name!r} is not running ({state}): `runyard session start {name}` starts it "
            "and waits until it is ready"
        )


def cluster_upstream(cluster: KubeResources, session: Session) -> Upstream:
    """A cluster's session: its Service's address, and its Jupyter token from the Secret the operator
    named on it."""
    from kubernetes.client import CoreV1Api

    from runyard.kube.api import translated

    m, st = session.metadata, session.status
    secret_name = m.annotations.get(SESSION_TOKEN_ANNOTATION)
    if not secret_name:
        raise Conflict(f"session {m.name!r} has no token yet: the operator has not started it")
    core = CoreV1Api(cluster.api_client)
    with translated():
        secret = core.read_namespaced_secret(secret_name, m.project)
        service = core.read_namespaced_service(session_service_name(m.name), m.project)
    if not any(o.uid == session.uid for o in service.metadata.owner_references or []):
        raise Conflict(
            f"session {m.name!r} is starting: its Service is an earlier session's, not yet deleted"
        )
    token = base64.b64decode((secret.data or {})[TOKEN_KEY]).decode()
    ip = service.spec.cluster_ip
    host = ip if ip and ip != "None" else f"{service.metadata.name}.{m.project}.svc"
    assert st.port is not None
    return Upstream(st.port, token, session.uid, host)
