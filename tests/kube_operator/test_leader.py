"""Leader election through a Lease: one leader among candidates, takeover after expiry, a 409 race.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; this module runs unchanged against a real cluster when KUBECONFIG names one.
Time is an injected clock, so expiry needs no sleeping.
"""

from __future__ import annotations

import threading

from kubernetes import client
from tests.kube.cluster import Cluster
from tests.kube_operator.conftest import FakeClock

from runyard.controller.kube.leader import LeaseElector


def elector(kube: Cluster, namespace: str, identity: str, clock: FakeClock, **kw: float) -> LeaseElector:
    return LeaseElector(kube.api_client, namespace, identity=identity, clock=clock, **kw)  # type: ignore[arg-type]


def holder(kube: Cluster, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(kube.api_client).read_namespaced_lease("runyard-operator", namespace)
    return lease.spec.holder_identity


def test_two_candidates_one_leader(kube: Cluster, namespace: str, clock: FakeClock) -> None:
    a, b = elector(kube, namespace, "a", clock), elector(kube, namespace, "b", clock)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    clock.advance(4)  # renewals within the lease keep it
    assert a.try_acquire_or_renew() is True
    clock.advance(4)
    assert b.try_acquire_or_renew() is False
    assert (a.is_leader(), b.is_leader()) == (True, False)
    assert holder(kube, namespace) == "a"


def test_takeover_after_the_leader_stops_renewing(kube: Cluster, namespace: str, clock: FakeClock) -> None:
    a, b = elector(kube, namespace, "a", clock), elector(kube, namespace, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b notes a's record at this instant of its own clock
    clock.advance(10)  # a renews no more: past its renew deadline it stops acting...
    assert not a.is_leader()
    assert not b.try_acquire_or_renew()  # ...but the lease (15 s) has not run out for b yet
    clock.advance(5)
    assert b.try_acquire_or_renew()
    assert holder(kube, namespace) == "b"
    assert not a.try_acquire_or_renew()  # a comes back and finds b's record fresh
    assert (a.is_leader(), b.is_leader()) == (False, True)
    lease = client.CoordinationV1Api(kube.api_client).read_namespaced_lease("runyard-operator", namespace)
    assert lease.spec.lease_transitions == 1


def test_a_409_race_has_exactly_one_winner(kube: Cluster, namespace: str, clock: FakeClock) -> None:
    """b reads the (free) Lease, a takes it before b writes: b's replace carries a stale resourceVersion."""
    a, b = elector(kube, namespace, "a", clock), elector(kube, namespace, "b", clock)
    assert a.try_acquire_or_renew()
    a.release()
    read = b.api.read_namespaced_lease

    def read_then_lose_the_race(*args: object, **kwargs: object) -> object:
        lease = read(*args, **kwargs)
        assert a.try_acquire_or_renew()
        return lease

    b.api.read_namespaced_lease = read_then_lose_the_race  # type: ignore[method-assign]
    assert b.try_acquire_or_renew() is False
    assert (a.is_leader(), b.is_leader()) == (True, False)
    assert holder(kube, namespace) == "a"


def test_release_hands_over_at_once(kube: Cluster, namespace: str, clock: FakeClock) -> None:
    a, b = elector(kube, namespace, "a", clock), elector(kube, namespace, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.is_leader()
    assert holder(kube, namespace) is None
    assert b.try_acquire_or_renew()  # no waiting out the lease


def test_run_leads_until_stopped_then_releases(kube: Cluster, namespace: str) -> None:
    a = LeaseElector(kube.api_client, namespace, identity="a", lease_seconds=2, renew_every=0.2)
    changes: list[bool] = []
    stop = threading.Event()
    thread = threading.Thread(target=a.run, args=(stop, changes.append))
    thread.start()
    try:
        for _ in range(100):
            if a.is_leader():
                break
            stop.wait(0.05)
        assert a.is_leader()
    finally:
        stop.set()
        thread.join(10)
    assert changes == [True, False]
    assert holder(kube, namespace) is None
