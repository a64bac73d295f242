"""Stream a run's logs across its attempts as NDJSON, optionally following until the run ends.

Followers sleep on the Notifier and wake when the run's record changes or it writes output; FALLBACK is
only how long a missed notice can delay them. The generators run on the event loop; every store and
runtime call (database, log files) goes to a worker thread.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from anyio.to_thread import run_sync as off_loop

from runyard.core.clock import aware
from runyard.core.errors import NotFound
from runyard.core.resources import Attempt, Experiment, Resource, Run
from runyard.runtime.base import LogEntry, Runtime
from runyard.services.notify import Notifier
from runyard.store import Store
from runyard.store.kube.resources import KubeResources

FALLBACK = 0.5  # seconds
MAX_TAIL = 100_000


@dataclass(frozen=True)
class LogQuery:
    follow: bool = False
    tail: int | None = None  # only the last N lines written so far, then (following) every new one
    since: datetime | None = None  # only lines written at or after this time


def _lines(entries: Iterable[LogEntry]) -> bytes:
    return b"".join(
        (json.dumps({"time": e.time.isoformat(), "stream": e.stream, "text": e.text}) + "\n").encode()
        for e in entries
    )


def _end(run: Run | None) -> bytes:
    if run is None:
        return b'{"end": true, "phase": "Deleted"}\n'
    st = run.status
    doc = {
        "end": True,
        "phase": st.phase.value,
        "exitCode": st.exitCode,
        "reason": st.reason,
        "message": st.message,
    }
    return (json.dumps(doc) + "\n").encode()


Objects = Store | KubeResources  # where runs are: the store, or a cluster's custom resources


def find_run(store: Objects, project: str, name: str) -> Run | None:
    """The run, or None while the Experiment of that name exists but its controller has not made it yet."""
    try:
        return cast(Run, store.get(Run, project, name))
    except NotFound:
        store.get(Experiment, project, name)  # NotFound for a name that is neither
        return None


async def _await_run(
    store: Objects, notifier: Notifier, project: str, name: str, timeout: float
) -> Run | None:
    """Wait for the controller to create an experiment's run: it touches the experiment when it does."""
    experiment: Resource = await off_loop(store.get, Experiment, project, name)
    exp_uid = experiment.uid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = notifier.versions(exp_uid)  # before the read, so a touch after it is not missed
        run = await off_loop(find_run, store, project, name)
        if run is not None:
            return run
        await notifier.wait(exp_uid, seen, FALLBACK)
    return None


def _same_run(store: Objects, run: Run) -> Run | None:
    """`run` as stored now; None once it is gone (or another run took its name)."""
    try:
        found = store.get(Run, run.metadata.project, run.metadata.name)
    except NotFound:
        return None
    return cast(Run, found) if found.uid == run.uid else None


def _next_entries(
    runtime: Runtime, atts: list[Attempt], idx: int, offset: int
) -> tuple[list[LogEntry], int, int]:
    """The next entries written, from attempt `idx` at `offset` on; none when all were read so far."""
    while idx < len(atts):
        handle = atts[idx].handle
        chunk = runtime.read_logs(handle, offset) if handle else None
        if chunk and chunk.entries:
            return chunk.entries, idx, chunk.offset
        if idx + 1 < len(atts):  # a later attempt exists, so this one has ended and was read to the end
            idx, offset = idx + 1, 0
            continue
        break
    return [], idx, offset


async def stream_logs(
    store: Objects,
    runtime: Runtime,
    notifier: Notifier,
    project: str,
    name: str,
    query: LogQuery,
    run: Run | None,
) -> AsyncIterator[bytes]:
    """`run` as find_run returned it: None while its experiment has not made it yet (followers wait)."""
    if run is None and query.follow:
        run = await _await_run(store, notifier, project, name, timeout=30.0)
    if run is None:
        yield b'{"end": true, "phase": "Pending", "message": "the run has not been created yet"}\n'
        return
    since = aware(query.since)
    held = deque[LogEntry](maxlen=query.tail) if query.tail is not None else None  # until caught up
    uid = run.uid
    idx, offset, seen_state = 0, 0, -1
    while True:
        seen = notifier.versions(uid)
        # The record changed (new attempts, a new phase); a cluster's changes come with no notice: look.
        if seen[0] != seen_state or isinstance(store, KubeResources):
            seen_state = seen[0]
            found = await off_loop(_same_run, store, run)
            if found is None:
                yield _end(None)
                return
            run = found
        progressed = False
        while True:
            entries, idx, offset = await off_loop(_next_entries, runtime, run.status.attempts, idx, offset)
            if not entries:
                break
            progressed = True
            shown = [e for e in entries if since is None or (aware(e.time) or e.time) >= since]
            if held is not None:
                held.extend(shown)
            elif shown:
                yield _lines(shown)
        if held is not None:  # caught up with what was written: its last lines, then every new one
            if held:
                yield _lines(held)
            held = None
        if not query.follow or (run.status.phase.is_terminal() and not progressed):
            yield _end(run)
            return
        if not progressed:
            await notifier.wait(uid, seen, FALLBACK)
