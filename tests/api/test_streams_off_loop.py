"""Log follow and watch never call the store or the runtime on the event loop: a stalled store stalls
only the streams that wait on it, never the server's other requests."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import anyio
import httpx
import psycopg
import pytest
from tests.support import experiment, fresh_postgres_database

from runyard.core.phases import Phase
from runyard.core.resources import Attempt, Experiment, ExperimentSpec, ObjectMeta, Run, RunSpec
from runyard.runtime.base import AttemptState, LaunchSpec
from runyard.runtime.local import LocalRuntime
from runyard.services.logs import LogQuery, stream_logs
from runyard.services.notify import Notifier
from runyard.services.watch import watch
from runyard.store import Store


def blocked_on_changes(url: str) -> int:
    """Backends of other sessions waiting for a lock while reading the change feed."""
    with psycopg.connect(url, autocommit=True) as conn:
        query = "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and query ilike %s"
        row = conn.execute(query, ("%from changes%",)).fetchone()
    return row[0] if row else 0


def test_watchers_blocked_by_the_store_do_not_block_other_requests(server_factory):
    url = fresh_postgres_database()
    srv = server_factory(url)
    api = srv.api()
    revision = api.get("/experiments").json()["metadata"]["revision"]
    seen = [threading.Event() for _ in range(3)]
    done: list[list[str]] = [[] for _ in seen]

    def follow(i: int) -> None:
        params = {"watch": "true", "since": revision}
        with srv.api().stream("GET", "/experiments", params=params, timeout=60) as resp:
            for raw in resp.iter_lines():
                name = json.loads(raw)["object"]["metadata"]["name"]
                done[i].append(name)
                seen[i].set()
                if name == "after":
                    return

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(len(seen))]
    for t in threads:
        t.start()
    api.put("/experiments/before", json=experiment("before", "true"))
    assert all(e.wait(30) for e in seen), "every watcher is streaming"

    with psycopg.connect(url) as holder:
        holder.execute("lock table changes in access exclusive mode")  # held until the block ends
        deadline = time.monotonic() + 20
        while blocked_on_changes(url) < len(seen):  # each watcher polls within a second
            assert time.monotonic() < deadline, "the watchers never reached the store"
            time.sleep(0.05)
        quick = httpx.Client(base_url=srv.url, timeout=5)
        assert quick.get("/healthz").status_code == 200
        assert api.get("/models/nothing", timeout=5).status_code == 404
        holder.rollback()

    api.put("/experiments/after", json=experiment("after", "true"))
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert all("after" in names for names in done)


class OnWhichThread:
    """The real object, noting the thread of every method call made through it."""

    def __init__(self, target: object, threads: list[tuple[str, int]]):
        self._target, self._threads = target, threads

    def __getattr__(self, name: str):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self._threads.append((name, threading.get_ident()))
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    yield s
    s.close()


def test_the_stream_generators_call_store_and_runtime_only_off_the_loop(store, tmp_path):
    runtime = LocalRuntime(tmp_path / "home")
    try:
        handle = runtime.launch(
            LaunchSpec(run_uid="r", project="default", name="r", attempt=1, argv=["seq", "5"], env={})
        )
        deadline = time.monotonic() + 10
        while runtime.observe(handle).state != AttemptState.EXITED:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        run = Run(metadata=ObjectMeta(name="r"), spec=RunSpec(command="seq 5"))
        run.status.phase = Phase.SUCCEEDED
        run.status.attempts = [Attempt(attempt=1, handle=handle)]
        run = store.create(run)
        store.create(Experiment(metadata=ObjectMeta(name="e"), spec=ExperimentSpec(command="true")))
        calls: list[tuple[str, int]] = []
        spy_store, spy_runtime = OnWhichThread(store, calls), OnWhichThread(runtime, calls)

        async def main() -> tuple[int, bytes, bytes]:
            loop_thread = threading.get_ident()
            query = LogQuery(follow=True, tail=2, since=datetime(2000, 1, 1, tzinfo=UTC))
            logs = b"".join(
                [c async for c in stream_logs(spy_store, spy_runtime, Notifier(), "default", "r", query, run)]
            )
            changes = watch(spy_store, Notifier(), Experiment, "default", None)  # type: ignore[arg-type]
            first = await changes.__anext__()
            await changes.aclose()
            return loop_thread, logs, first

        loop_thread, logs, first = anyio.run(main)
        lines = [json.loads(x) for x in logs.splitlines()]
        assert [x.get("text") for x in lines[:-1]] == ["4", "5"] and lines[-1]["end"]
        assert json.loads(first)["object"]["metadata"]["name"] == "e"
        names = {name for name, _ in calls}
        assert {"get", "read_logs", "list"} <= names
        on_loop = [name for name, thread in calls if thread == loop_thread]
        assert on_loop == [], f"called on the event loop: {on_loop}"
    finally:
        runtime.close()
