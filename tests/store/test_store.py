"""The Store against real SQLite and PostgreSQL: optimistic concurrency, idempotency, migrations."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from runyard.core.errors import Conflict, NotFound
from runyard.core.resources import Experiment, Job, parse_workload
from runyard.store import Store
from runyard.store.tables import Base


def exp(name: str = "train", command: str = "python train.py"):
    return parse_workload(
        {
            "apiVersion": "runyard.dev/v1",
            "kind": "Experiment",
            "metadata": {"name": name},
            "spec": {"command": command},
        }
    )


def test_create_then_get_round_trips_the_document(store):
    created = store.create(exp())
    got = store.get(Experiment, "default", "train")
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.resourceVersion == 1
    assert got.spec.command == "python train.py"
    assert got.metadata.creationTimestamp.tzinfo is not None


def test_a_second_create_of_the_same_name_is_a_conflict(store):
    store.create(exp())
    with pytest.raises(Conflict):
        store.create(exp())


def test_a_retried_create_with_the_same_request_id_returns_the_first(store):
    first = store.create(exp(), idempotency_key="req-1")
    again = store.create(exp(), idempotency_key="req-1")
    assert again.metadata.uid == first.metadata.uid
    assert len(store.list(Experiment)) == 1


def test_a_stale_write_is_rejected_not_lost(store):
    current = store.create(exp())
    store.update_status(current)  # someone else wrote: resourceVersion is now 2
    with pytest.raises(Conflict, match="resourceVersion is 2"):
        store.update_status(current)  # still based on 1
    assert store.get(Experiment, "default", "train").metadata.resourceVersion == 2


def test_concurrent_writers_never_lose_an_update(store):
    """Eight threads each add one label with read-modify-write and retry on conflict: all survive."""
    store.create(exp())

    def add_label(i: int) -> None:
        while True:
            cur = store.get(Experiment, "default", "train")
            cur.metadata.labels[f"k{i}"] = "v"
            try:
                store.replace(cur, expect_version=cur.metadata.resourceVersion)
                return
            except Conflict:
                continue

    threads = [threading.Thread(target=add_label, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get(Experiment, "default", "train")
    assert set(final.metadata.labels) == {f"k{i}" for i in range(8)}
    assert final.metadata.resourceVersion == 9


def test_replace_bumps_generation_only_when_the_spec_changes(store):
    cur = store.create(exp())
    cur.metadata.labels["a"] = "b"
    cur = store.replace(cur, cur.metadata.resourceVersion)
    assert cur.metadata.generation == 1
    cur.spec.command = "python other.py"
    cur = store.replace(cur, cur.metadata.resourceVersion)
    assert cur.metadata.generation == 2


def test_unfinished_lists_what_a_controller_must_still_act_on(store):
    a = store.create(exp("a"))
    b = store.create(exp("b"))
    a.status.phase = "Succeeded"
    store.update_status(a)
    assert [r.metadata.name for r in store.list(Experiment, unfinished=True)] == ["b"]
    store.mark_deleted(store.get_uid(a.metadata.uid))
    assert {r.metadata.name for r in store.list(Experiment, unfinished=True)} == {"a", "b"}
    store.delete(b.metadata.uid)
    with pytest.raises(NotFound):
        store.get(Experiment, "default", "b")


def test_new_or_deleting_lists_what_has_no_status_yet_or_is_being_deleted(store):
    """What the controller's resync looks at for kinds with nothing to do once their status is written:
    thousands of settled Jobs must not be listed (and validated) every tick."""
    job = {"apiVersion": "runyard.dev/v1", "kind": "Job", "spec": {"template": {"command": "true"}}}
    new, settled, deleting = (store.create(parse_workload({**job, "metadata": {"name": n}})) for n in "abc")
    for res in (settled, deleting):
        res.status.phase = "Pending"
        store.update_status(res)
    store.mark_deleted(store.get_uid(deleting.metadata.uid))
    names = {r.metadata.name for r in store.list(Job, new_or_deleting=True)}
    assert names == {new.metadata.name, deleting.metadata.name}


def test_events_are_kept_in_order(store):
    res = store.create(exp())
    store.add_event(res, "Created", "one")
    store.add_event(res, "Started", "two", type="Normal")
    assert [e.reason for e in store.events(res.metadata.uid)] == ["Created", "Started"]


def test_the_migrations_and_the_orm_agree(store):
    """Alembic's autogenerate finds nothing to change after upgrading to head."""
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrading_twice_is_harmless(store_url):
    Store(store_url).close()
    s = Store(store_url)
    assert s.projects() == []
    s.close()


def test_the_change_feed_numbers_every_write_and_forgets_old_ones(store):
    from datetime import timedelta

    from runyard.services.watch import gone

    res = store.create(exp("fed"))
    res.status.phase = "Running"
    store.update_status(res)
    store.delete(res.uid)
    changes = store.changes_since(Experiment, "default", 0)
    assert [c.type for c in changes] == ["ADDED", "MODIFIED", "DELETED"]
    assert changes[-1].object["metadata"]["name"] == "fed"  # a deletion carries the last state
    store.prune_changes(timedelta(0))
    store.create(exp("later"))
    low, high = store.change_bounds()
    assert low == high == changes[-1].seq + 1
    assert gone(store, changes[0].seq)  # a watch from before the prune must list again
    assert not gone(store, changes[-1].seq)


def test_pages_of_a_list_cover_everything_once_in_creation_order(store):
    names = [f"p{i}" for i in range(7)]
    for name in names:
        store.create(exp(name))
    seen, after = [], None
    while True:
        page = store.list(Experiment, "default", limit=3, after=after)
        seen += [r.metadata.name for r in page]
        if len(page) < 3:
            break
        last = page[-1].metadata
        after = (last.creationTimestamp, last.uid)
    assert seen == names
