"""Stream a run's logs across its attempts as NDJSON, optionally following until the run ends.

Followers sleep on the Notifier and wake when the run's record changes or it writes output; FALLBACK is
only how long a missed notice can delay them.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from runyard.core.errors import NotFound
from runyard.core.resources import Experiment, Run
from runyard.runtime.base import Runtime
from runyard.services.notify import Notifier
from runyard.store import Store

FALLBACK = 0.5  # seconds


def _line(entry) -> bytes:
    return (
        json.dumps({"time": entry.time.isoformat(), "stream": entry.stream, "text": entry.text}) + "\n"
    ).encode()


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


def find_run(store: Store, project: str, name: str) -> Run | None:
    """The run, or None while the Experiment of that name exists but its controller has not made it yet."""
    try:
        return store.get(Run, project, name)
    except NotFound:
        store.get(Experiment, project, name)  # NotFound for a name that is neither
        return None


async def _await_run(store: Store, notifier: Notifier, project: str, name: str, timeout: float) -> Run | None:
    """Wait for the controller to create an experiment's run: it touches the experiment when it does."""
    exp_uid = store.get(Experiment, project, name).uid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = notifier.versions(exp_uid)  # before the read, so a touch after it is not missed
        run = find_run(store, project, name)
        if run is not None:
            return run
        await notifier.wait(exp_uid, seen, FALLBACK)
    return None


async def stream_logs(
    store: Store, runtime: Runtime, notifier: Notifier, project: str, name: str, follow: bool, run: Run | None
) -> AsyncIterator[bytes]:
    """`run` as find_run returned it: None while its experiment has not made it yet (followers wait)."""
    if run is None and follow:
        run = await _await_run(store, notifier, project, name, timeout=30.0)
    if run is None:
        yield b'{"end": true, "phase": "Pending", "message": "the run has not been created yet"}\n'
        return
    uid = run.uid
    idx, offset, seen_state = 0, 0, -1
    while True:
        seen = notifier.versions(uid)
        if seen[0] != seen_state:  # the record changed: new attempts, a new phase
            seen_state = seen[0]
            found = store.get_uid(uid)
            if not isinstance(found, Run):
                yield _end(None)
                return
            run = found
        progressed = False
        atts = run.status.attempts
        while idx < len(atts):
            handle = atts[idx].handle
            chunk = runtime.read_logs(handle, offset) if handle else None
            if chunk and chunk.entries:
                offset, progressed = chunk.offset, True
                yield b"".join(_line(e) for e in chunk.entries)
                continue
            if idx + 1 < len(atts):  # a later attempt exists, so this one has ended and was read to the end
                idx, offset = idx + 1, 0
                continue
            break
        if not follow or (run.status.phase.is_terminal() and not progressed):
            yield _end(run)
            return
        if not progressed:
            await notifier.wait(uid, seen, FALLBACK)
