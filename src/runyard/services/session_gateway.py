"""Where the proxy forwards a Session's requests, and when it last forwarded any (for idle reclamation).

Both are answered from memory on the hot path: a kernel websocket message must not cost a store read,
so upstreams are cached for a moment (a restarted session's new port is seen within `ttl`; a connection
refused meanwhile makes the proxy `forget` it), and activity is kept in memory only (the controller
folds it into status.lastActivity)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from runyard.core.errors import Conflict
from runyard.core.resources import Session
from runyard.services.session_secrets import jupyter_token
from runyard.store import Store

SERVING = ("Running", "Starting")


@dataclass(frozen=True)
class Upstream:
    port: int
    token: str  # the session run's Jupyter token
    session_uid: str


class SessionGateway:
    def __init__(self, store: Store, key: bytes, ttl: float = 2.0):
        self.store, self.key, self.ttl = store, key, ttl
        self._upstreams: dict[tuple[str, str], tuple[Upstream, float]] = {}
        self._activity: dict[str, float] = {}

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
        session = self.store.get(Session, project, name)
        st = session.status
        if st.phase not in SERVING or not st.port or not st.runUid:
            state = "stopped" if session.spec.stopped else f"phase {st.phase or 'Pending'}"
            raise Conflict(
                f"session {name!r} is not running ({state}): `runyard session start {name}` starts it "
                "and waits until it is ready"
            )
        up = Upstream(st.port, jupyter_token(self.key, st.runUid), session.uid)
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
