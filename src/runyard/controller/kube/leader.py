"""Leader election through a coordination.k8s.io/v1 Lease, so that two operator replicas never both act.

The rules are client-go's: a candidate takes the Lease when nobody holds it or when the holder's record
(holderIdentity, renewTime) has not changed for leaseDurationSeconds of the candidate's *own* clock, so
clock skew between replicas does not matter; every write is a replace carrying the resourceVersion that
was read, so of two candidates racing for one Lease the API server lets exactly one win (409 to the
other). A leader that cannot renew within its lease stops acting before anyone else may start. Releasing
clears holderIdentity, so a successor takes over at once instead of waiting out the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

LEASE_NAME = "runyard-operator"


def default_identity() -> str:
    """The pod's name in a cluster (its hostname), made unique per process for a second replica on one
    host."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaseElector:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str = LEASE_NAME,
        identity: str | None = None,
        lease_seconds: float = 15.0,
        renew_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        from kubernetes import client

        if renew_every * 2 > lease_seconds:
            raise ValueError("renew_every must be at most half of lease_seconds")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.lease_seconds, self.renew_every = lease_seconds, renew_every
        self.clock = clock
        self._observed: tuple[str | None, Any] | None = None  # (holder, renewTime) last read
        self._observed_at = 0.0  # our clock when that record last changed
        self._renewed_at: float | None = None  # our clock when we last wrote the Lease as its holder
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        """Held, and renewed within the renew deadline: a leader that cannot renew stops acting one renewal
        period before another candidate may take over (client-go's renewDeadline)."""
        with self._lock:
            at = self._renewed_at
        return at is not None and self.clock() - at < self.lease_seconds - self.renew_every

    def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease, then take it, renew it or leave it. Returns whether we lead."""
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self._read()
            if lease is None:
                self._create()
                return self._won()
            spec = lease.spec
            holder = spec.holder_identity or None
            record = (holder, spec.renew_time)
            if record != self._observed:
                self._observed, self._observed_at = record, self.clock()
            if holder not in (None, self.identity) and not self._expired(spec):
                self._lost()
                return False
            self._replace(lease, taking=holder != self.identity)
            return self._won()
        except ApiException as exc:
            if exc.status == 409:  # another candidate wrote first: theirs is the Lease now
                log.info("lease %s/%s: lost the race to another candidate", self.namespace, self.name)
            else:
                log.warning("lease %s/%s: %s %s", self.namespace, self.name, exc.status, exc.reason)
            self._lost_if_stale()
            return self.is_leader()

    def release(self) -> None:
        """Clear holderIdentity if we hold the Lease, so a successor need not wait out the lease."""
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            held, self._renewed_at = self._renewed_at is not None, None
        if not held:
            return
        try:
            lease = self._read()
            if lease is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.renew_time = _now()
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, exc.status)

    def run(self, stop: threading.Event, on_change: Callable[[bool], None] | None = None) -> None:
        """Campaign and renew until `stop` is set, then release. `on_change(leading)` is called on every
        change of leadership, from this thread. A candidate retries as often as a leader renews."""
        leading = False
        try:
            while not stop.is_set():
                now_leading = self.try_acquire_or_renew()
                if now_leading != leading:
                    leading = now_leading
                    log.info(
                        "lease %s/%s: %s", self.namespace, self.name, "leading" if leading else "standby"
                    )
                    if on_change:
                        on_change(leading)
                stop.wait(self.renew_every)
        finally:
            self.release()
            if leading and on_change:
                on_change(False)

    # -- the API calls

    def _read(self) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _create(self) -> None:
        now = _now()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_seconds),
                "acquireTime": _micro(now),
                "renewTime": _micro(now),
                "leaseTransitions": 0,
            },
        }
        self.api.create_namespaced_lease(self.namespace, body)

    def _replace(self, lease: Any, taking: bool) -> None:
        """Write ourselves as holder with the resourceVersion we read: a stale one is a 409."""
        spec, now = lease.spec, _now()
        if taking:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + (1 if spec.holder_identity else 0)
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = int(self.lease_seconds)
        spec.renew_time = now
        self.api.replace_namespaced_lease(self.name, self.namespace, lease)

    # -- state

    def _expired(self, spec: Any) -> bool:
        duration = spec.lease_duration_seconds or self.lease_seconds
        return self.clock() - self._observed_at >= duration

    def _won(self) -> bool:
        with self._lock:
            self._renewed_at = self.clock()
        return True

    def _lost(self) -> None:
        with self._lock:
            self._renewed_at = None

    def _lost_if_stale(self) -> None:
        """A failed renewal keeps leadership only while the last good one is within the lease."""
        if not self.is_leader():
            self._lost()


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(dt: datetime) -> str:
    """A MicroTime as the API server writes it."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
