"""The gateway on a real SQLite store: where a session's Jupyter is (port, derived token), a short cache
that a failed connection drops, clear errors for a missing or stopped session, and activity in memory."""

from __future__ import annotations

import time

import pytest
from tests.support import until

from runyard.core.errors import Conflict, NotFound
from runyard.core.resources import Session
from runyard.services.auth import Principal
from runyard.services.resources import apply_resource
from runyard.services.session_gateway import SessionGateway
from runyard.services.session_secrets import jupyter_token
from runyard.store import Store

KEY = b"k" * 32
WHO = Principal("t", "tester", "admin", None)


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    s.ensure_project("default")
    return s


def session(store: Store, name: str, phase: str | None, port: int | None, run_uid: str | None) -> Session:
    doc = {"metadata": {"name": name, "project": "default"}, "spec": {"stopped": phase is None}}
    apply_resource(store, WHO, Session.model_validate(doc))
    current = store.get(Session, "default", name)
    current.status.phase, current.status.port, current.status.runUid = phase, port, run_uid
    return store.update_status(current)


def test_a_running_session_is_found_and_cached_briefly(store):
    made = session(store, "nb", "Running", 40001, "run-1")
    gw = SessionGateway(store, KEY, ttl=0.3)
    assert gw.cached("default", "nb") is None
    up = gw.upstream("default", "nb")
    assert (up.port, up.token, up.session_uid) == (40001, jupyter_token(KEY, "run-1"), made.uid)
    assert gw.cached("default", "nb") == up

    moved = store.get(Session, "default", "nb")  # a new run on another port
    moved.status.port, moved.status.runUid = 40002, "run-2"
    store.update_status(moved)
    assert gw.upstream("default", "nb").port == 40001  # still the cached one
    gw.forget("default", "nb")  # as the proxy does when the old port refuses
    assert gw.upstream("default", "nb").port == 40002
    again = store.get(Session, "default", "nb")
    again.status.port = 40003
    store.update_status(again)
    until(lambda: gw.upstream("default", "nb").port == 40003, "the cached upstream expires", 5)


def test_a_missing_or_stopped_session_says_what_to_do(store):
    gw = SessionGateway(store, KEY)
    with pytest.raises(NotFound):
        gw.upstream("default", "nobody")
    session(store, "off", None, None, None)
    with pytest.raises(Conflict, match=r"stopped.*`runyard session start off`"):
        gw.upstream("default", "off")
    session(store, "booting", "Pending", None, None)
    with pytest.raises(Conflict, match=r"phase Pending"):
        gw.upstream("default", "booting")


def test_activity_is_remembered_per_session(store):
    gw = SessionGateway(store, KEY)
    assert gw.last_activity("uid-1") is None
    before = time.time()
    gw.touch("uid-1")
    seen = gw.last_activity("uid-1")
    assert seen is not None and seen.tzinfo is not None
    assert before - 0.001 <= seen.timestamp() <= time.time()
    assert gw.last_activity("uid-2") is None
