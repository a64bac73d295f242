"""The change feed's order on PostgreSQL: writers of one (kind, project) take turns, other streams go on in
parallel, and a list's revision never runs ahead of a change in flight, so a watcher never misses one."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest
from sqlalchemy import func, select, text
from tests.support import experiment, fresh_postgres_database

from runyard.core.resources import Experiment, parse_workload
from runyard.store import Store
from runyard.store.changes import CHANGES, MODIFIED


def exp_in(project: str, name: str = "e"):
    doc = experiment(name)
    doc["metadata"]["project"] = project
    return parse_workload(doc)


@pytest.fixture
def pg_store():
    s = Store(fresh_postgres_database())
    yield s
    s.close()


def hold_write(stack: ExitStack, store: Store, res) -> int:
    """A write of `res`'s change stream, recorded and left uncommitted until `stack` closes; its seq."""
    conn = stack.enter_context(store.connect(write=True))
    store._record(conn, res.uid, res, MODIFIED)
    return conn.execute(select(func.max(CHANGES.c.seq))).scalar()


def in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(result=fn()), daemon=True)
    t.start()
    return t, out


def test_a_write_in_one_project_does_not_wait_for_a_write_in_flight_in_another(pg_store):
    a, b = pg_store.create(exp_in("a")), pg_store.create(exp_in("b"))
    with ExitStack() as stack:
        hold_write(stack, pg_store, a)
        t, out = in_thread(lambda: pg_store.update_status(b))
        t.join(timeout=10)
        assert "result" in out, "a write in project b waited for one in flight in project a"


def test_a_revision_never_runs_ahead_of_a_change_in_flight_in_its_stream(pg_store):
    a = pg_store.create(exp_in("a"))
    pg_store.create(exp_in("b"))
    with ExitStack() as stack:
        seq = hold_write(stack, pg_store, a)
        t, out = in_thread(lambda: pg_store.create(exp_in("b", "later")))  # commits a higher seq
        t.join(timeout=10)
        assert "result" in out

        def revision_then_is_it_committed() -> tuple[int, bool]:
            rev = pg_store.revision(Experiment, "a")
            with pg_store.connect() as conn:
                committed = conn.execute(select(CHANGES.c.seq).where(CHANGES.c.seq == seq)).first()
            return rev, committed is not None

        t, out = in_thread(revision_then_is_it_committed)
        deadline = time.monotonic() + 10
        while t.is_alive() and not _waiting_on_advisory_lock(pg_store) and time.monotonic() < deadline:
            time.sleep(0.01)
    t.join(timeout=10)
    rev, committed = out["result"]
    # Either a watch from `rev` gets the change, or it had committed (so a list made after shows it).
    assert rev < seq or committed, f"revision {rev} passed change {seq} before it committed"


def _waiting_on_advisory_lock(store: Store) -> bool:
    q = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    with store.connect() as conn:
        return bool(conn.execute(q).scalar())


def test_concurrent_writers_in_two_projects_are_each_watched_without_a_miss(store_url):
    """Two writers per project write status while a watcher per project follows from its revision."""
    store = Store(store_url)
    try:
        resources = {p: [store.create(exp_in(p, f"e{i}")) for i in range(2)] for p in ("a", "b")}
        start = {p: store.revision(Experiment, p) for p in resources}
        writing = threading.Event()
        writing.set()

        def write(res) -> None:
            for _ in range(40):
                res = store.update_status(res)

        def watch(project: str, seen: list[int]) -> None:
            since, deadline = start[project], time.monotonic() + 60
            while time.monotonic() < deadline:
                still_writing = writing.is_set()
                changes = store.changes_since(Experiment, project, since)
                seen += [c.seq for c in changes]
                since = seen[-1] if seen else since
                if not changes and not still_writing:
                    return

        seen: dict[str, list[int]] = {"a": [], "b": []}
        watchers = [threading.Thread(target=watch, args=(p, seen[p])) for p in seen]
        writers = [threading.Thread(target=write, args=(r,)) for rs in resources.values() for r in rs]
        for t in watchers + writers:
            t.start()
        for t in writers:
            t.join()
        writing.clear()
        for t in watchers:
            t.join()
        for project, got in seen.items():
            every = [c.seq for c in store.changes_since(Experiment, project, start[project], limit=1000)]
            assert len(every) == 80
            assert got == every, f"the watcher of {project} missed or reordered changes"
    finally:
        store.close()
