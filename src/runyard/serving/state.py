"""The server's side of serving: each model's listening socket (held here for the model's life, handed to
its replicas) and the figures read from its replicas (for the autoscaler, the API, `runyard models status`
and Prometheus)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from runyard.serving.listeners import bind_listener
from runyard.serving.protocol import BUCKETS
from runyard.settings import ServingSettings

LIVENESS_FAILURES = 3  # /ready failing this many probes in a row on a replica that was ready: replace it
LOAD_WINDOW_PROBES = 10  # the autoscaler reads the requests in flight averaged over this many probe rounds


@dataclass
class VersionFigures:
    """One version of one model, summed over its replicas, cumulative since this server started watching
    (a replica's restart does not set the counts back)."""

    version: int
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    latency_sum: float = 0.0
    replicas: int = 0
    ready_replicas: int = 0

    def quantile(self, q: float) -> float | None:
        """Seconds, from the histogram (the upper bound of the bucket the q-th request falls in, linearly
        interpolated inside it); None before the first request."""
        total = sum(self.buckets)
        if total == 0:
            return None
        rank = q * total
        seen, lower = 0, 0.0
        for upper, count in zip(BUCKETS, self.buckets, strict=True):
            if count and seen + count >= rank:
                if upper == float("inf"):  # past the last bound: all that is known is the bound
                    return lower
                return lower + (upper - lower) * max(0.0, rank - seen) / count
            seen += count
            lower = upper if upper != float("inf") else lower
        return lower

    def add(self, counts: dict) -> None:
        """Add one replica's cumulative counts (its /metrics document)."""
        self.requests += int(counts.get("requests") or 0)
        self.errors += int(counts.get("errors") or 0)
        self.latency_sum += float(counts.get("latency_sum") or 0.0)
        for i, n in enumerate((counts.get("buckets") or [])[: len(BUCKETS)]):
            self.buckets[i] += int(n)


@dataclass(frozen=True)
class Replica:
    """What the controller asks to be watched: one running attempt of a replica Run."""

    run_uid: str
    attempt: int
    version: int


@dataclass
class ReplicaHealth:
    ready: bool = False
    ever_ready: bool = False
    failures: int = 0  # /ready failures in a row since it was last ready
    metrics: dict | None = None


@dataclass
class _Model:
    sock: socket.socket
    port: int
    token: str  # identifies this socket: replicas launched with another one (before a restart) are stale
    last_activity: float = field(default_factory=time.time)  # epoch of the last request seen (or start)
    idle: bool = False  # no replica: the prober watches the listener for a connection that waits
    replicas: dict[Replica, ReplicaHealth] = field(default_factory=dict)
    load: deque[int] = field(default_factory=lambda: deque(maxlen=LOAD_WINDOW_PROBES))  # in flight per round
    gone: dict[int, VersionFigures] = field(default_factory=dict)  # counts of replicas no longer watched


class Serving:
    def __init__(self, settings: ServingSettings | None = None) -> None:
        self.settings = settings or ServingSettings()
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}

    def listener(self, model_uid: str, port: int | None) -> socket.socket:
        """The model's listening socket: the one held, or a new one bound to `port` (its recorded port,
        so that the URL survives a restart; any free port when None or taken)."""
        with self._lock:
            held = self._models.get(model_uid)
            if held is None:
                sock = bind_listener(self.settings.host, port)
                held = _Model(sock, sock.getsockname()[1], secrets.token_hex(8))
                self._models[model_uid] = held
            return held.sock

    def listener_token(self, model_uid: str) -> str | None:
        """Tells the listener held now from one an earlier server held (replicas adopted after a restart
        accept on that one, not on this one)."""
        held = self._models.get(model_uid)
        return held.token if held else None

    def close(self, model_uid: str) -> None:
        """The model is gone: stop listening."""
        with self._lock:
            held = self._models.pop(model_uid, None)
        if held is not None:
            held.sock.close()

    def close_all(self) -> None:
        for uid in list(self._models):
            self.close(uid)

    def url(self, port: int) -> str:
        host = self.settings.public_host or self.settings.host
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def figures(self, model_uid: str) -> dict[int, VersionFigures]:
        """Per version, what its replicas said last; empty for a model never served here."""
        with self._lock:
            held = self._models.get(model_uid)
            if held is None:
                return {}
            out = {v: _copy(f) for v, f in held.gone.items()}
            for rep, health in held.replicas.items():
                fig = out.setdefault(rep.version, VersionFigures(rep.version))
                fig.replicas += 1
                fig.ready_replicas += health.ready
                if health.metrics:
                    fig.add(health.metrics)
                    fig.in_flight += int(health.metrics.get("in_flight") or 0)
            return dict(sorted(out.items()))

    # -- what the controller tells, and reads back ----------------------------------------------------------

    def watch(self, model_uid: str, replicas: list[Replica]) -> None:
        """The replicas to probe now; counts of those dropped are kept (cumulative figures)."""
        with self._lock:
            held = self._models.get(model_uid)
            if held is None:
                return
            keep = set(replicas)
            for rep in [r for r in held.replicas if r not in keep]:
                self._retire(held, rep)
            for rep in replicas:
                held.replicas.setdefault(rep, ReplicaHealth())

    def health(self, model_uid: str, run_uid: str, attempt: int) -> ReplicaHealth | None:
        held = self._models.get(model_uid)
        if held is None:
            return None
        for rep, health in held.replicas.items():
            if rep.run_uid == run_uid and rep.attempt == attempt:
                return health
        return None

    def in_flight(self, model_uid: str) -> float:
        """Requests in flight over all the model's replicas, averaged over the last LOAD_WINDOW_PROBES
        probe rounds: one round's count is noisy."""
        with self._lock:
            held = self._models.get(model_uid)
            if held is None or not held.load:
                return 0.0
            return sum(held.load) / len(held.load)

    def probed(self, model_uid: str) -> None:
        """A probe round of the model's replicas is over: sample the requests in flight."""
        with self._lock:
            held = self._models.get(model_uid)
            if held is None:
                return
            total = sum(int((h.metrics or {}).get("in_flight") or 0) for h in held.replicas.values())
            held.load.append(total)

    def last_activity(self, model_uid: str) -> float:
        held = self._models.get(model_uid)
        return held.last_activity if held else time.time()

    def mark_active(self, model_uid: str) -> None:
        """Idle time starts over: a model is idle only while it serves, not while its replicas start."""
        held = self._models.get(model_uid)
        if held is not None:
            held.last_activity = time.time()

    def set_idle(self, model_uid: str, idle: bool) -> None:
        held = self._models.get(model_uid)
        if held is not None:
            held.idle = idle

    # -- what the prober tells, and reads --------------------------------------------------------------------

    def watched(self) -> dict[str, list[Replica]]:
        with self._lock:
            return {uid: list(m.replicas) for uid, m in self._models.items() if m.replicas}

    def idle_listeners(self) -> dict[socket.socket, str]:
        with self._lock:
            return {m.sock: uid for uid, m in self._models.items() if m.idle}

    def activate(self, model_uid: str) -> bool:
        """A connection waits for a model without replicas: it is active now. False if it was already."""
        with self._lock:
            held = self._models.get(model_uid)
            if held is None or not held.idle:
                return False
            held.idle, held.last_activity = False, time.time()
            return True

    def observe(self, model_uid: str, rep: Replica, ready: bool, metrics: dict | None) -> bool:
        """Record one probe; True when the controller should look now (readiness changed, or liveness
        failed)."""
        with self._lock:
            held = self._models.get(model_uid)
            health = held.replicas.get(rep) if held else None
            if held is None or health is None:
                return False
            was_ready, failures = health.ready, health.failures
            health.ready = ready
            health.ever_ready |= ready
            health.failures = 0 if ready else failures + 1
            if metrics is not None:
                self._take(held, rep, health, metrics)
            return was_ready != ready or health.failures == LIVENESS_FAILURES

    def _take(self, held: _Model, rep: Replica, health: ReplicaHealth, metrics: dict) -> None:
        last = health.metrics
        restarted = last is not None and (
            metrics.get("started") != last.get("started")
            or int(metrics.get("requests") or 0) < int(last.get("requests") or 0)
        )
        if restarted:  # counts start over: keep what the earlier process counted
            self._retire(held, rep, keep_watching=True)
        grew = last is None or restarted or metrics.get("requests") != last.get("requests")
        if grew and (metrics.get("requests") or metrics.get("in_flight")):
            held.last_activity = max(held.last_activity, float(metrics.get("last_request") or time.time()))
        if metrics.get("in_flight"):
            held.last_activity = time.time()
        health.metrics = metrics

    def _retire(self, held: _Model, rep: Replica, keep_watching: bool = False) -> None:
        health = held.replicas[rep] if keep_watching else held.replicas.pop(rep)
        if health.metrics:
            held.gone.setdefault(rep.version, VersionFigures(rep.version)).add(health.metrics)
            health.metrics = None


def _copy(fig: VersionFigures) -> VersionFigures:
    return VersionFigures(fig.version, fig.requests, fig.errors, 0, list(fig.buckets), fig.latency_sum)
