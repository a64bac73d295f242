"""Stream a run's logs across its attempts as NDJSON, optionally following until the run ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from runyard.core.errors import NotFound
from runyard.core.resources import Run
from runyard.runtime.base import Runtime
from runyard.services.notify import Notifier
from runyard.store import Store

POLL_MIN, POLL_MAX = 0.002, 0.05  # seconds: quick while output flows, cheap while idle


def _line(entry) -> bytes:
    return (json.dumps({"time": entry.time.isoformat(), "stream": entry.stream, "text": entry.text}) + "\n").encode()


def _end(run: Run | None) -> bytes:
    if run is None:
        return b'{"end": true, "phase": "Deleted"}\n'
    st = run.status
    doc = {"end": True, "phase": st.phase.value, "exitCode": st.exitCode, "reason": st.reason, "message": st.message}
    return (json.dumps(doc) + "\n").encode()


def find_run(store: Store, project: str, name: str) -> Run | None:
    """The run, or None while the Experiment of that name exists but its controller has not made it yet."""
    try:
        return store.get("Run", project, name)
    except NotFound:
        store.get("Experiment", project, name)  # NotFound for a name that is neither
        return None


async def _await_run(store: Store, project: str, name: str, timeout: float = 30.0) -> Run | None:
    interval, waited = POLL_MIN, 0.0
    while True:
        run = find_run(store, project, name)
        if run is not None or waited >= timeout:
            return run
        await asyncio.sleep(interval)
        waited += interval
        interval = min(POLL_MAX, interval * 1.5)


async def stream_logs(
    store: Store, runtime: Runtime, notifier: Notifier, project: str, name: str, follow: bool
) -> AsyncIterator[bytes]:
    run = await _await_run(store, project, name, timeout=30.0 if follow else 0.0)
    if run is None:
        yield b'{"end": true, "phase": "Pending", "message": "the run has not been created yet"}\n'
        return
    uid = run.metadata.uid
    idx, offset, seen, interval = 0, 0, notifier.version(uid), POLL_MIN
    run = store.get_uid(uid) or run  # re-read after taking `seen`, so no change can slip between
    while True:
        progressed = False
        atts = run.status.attempts
        while idx < len(atts):
            chunk = runtime.read_logs(atts[idx].handle, offset) if atts[idx].handle else None
            if chunk and chunk.entries:
                offset, progressed = chunk.offset, True
                yield b"".join(_line(e) for e in chunk.entries)
                continue
            if idx + 1 < len(atts):  # a later attempt exists, so this one has ended and was read to the end
                idx, offset = idx + 1, 0
                continue
            break
        if (run.status.phase.is_terminal() and not progressed) or not follow:
            yield _end(run)
            return
        if notifier.version(uid) != seen:
            seen = notifier.version(uid)
            run = store.get_uid(uid)
            if run is None:
                yield _end(None)
                return
            progressed = True
        interval = POLL_MIN if progressed else min(POLL_MAX, interval * 1.5)
        await asyncio.sleep(interval)
