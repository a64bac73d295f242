"""Watch a collection: every change to a kind in a project as NDJSON {type, revision, object}, like a
Kubernetes watch. Without `since`, the current objects come first as ADDED; with the `revision` a list
returned, exactly what changed after that list.

The generator runs on the event loop; every store call goes to a worker thread, so a slow store never
stalls the other requests.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

from anyio.to_thread import run_sync as off_loop

from runyard.core.resources import Resource
from runyard.services.notify import ANY, Notifier
from runyard.store import Store

FALLBACK = 1.0  # seconds a missed notice can delay a watcher
KEEP_CHANGES = timedelta(minutes=15)  # how far behind a watch may resume with `since`


def _line(type_: str, revision: int, obj: dict) -> bytes:
    return (json.dumps({"type": type_, "revision": revision, "object": obj}) + "\n").encode()


def _dump(res: Resource) -> dict:
    return res.model_dump(mode="json", exclude_none=True)


def gone(store: Store, since: int) -> bool:
    """The changes after `since` were already pruned: the caller must list again."""
    low, _high = store.change_bounds()
    return low > since + 1


def _current(store: Store, kind: type[Resource], project: str) -> tuple[bytes, int]:
    """What exists now, as ADDED lines, and the revision to watch on from."""
    since = store.revision(kind, project)
    return b"".join(_line("ADDED", since, _dump(res)) for res in store.list(kind, project)), since


def _changes(store: Store, kind: type[Resource], project: str, since: int) -> tuple[bytes, int, bool]:
    """The lines of the changes after `since`, the revision reached, and whether there were any."""
    changes = store.changes_since(kind, project, since)
    out = []
    for ch in changes:
        since = ch.seq
        if ch.type == "DELETED":
            out.append(_line(ch.type, ch.seq, ch.object))
            continue
        current = store.get_uid(ch.uid)
        if current is not None:  # else a DELETED follows
            out.append(_line(ch.type, ch.seq, _dump(current)))
    return b"".join(out), since, bool(changes)


async def watch(
    store: Store, notifier: Notifier, kind: type[Resource], project: str, since: int | None
) -> AsyncIterator[bytes]:
    if since is None:
        lines, revision = await off_loop(_current, store, kind, project)
        if lines:
            yield lines
    else:
        revision = since
    while True:
        seen = notifier.versions(ANY)
        lines, revision, changed = await off_loop(_changes, store, kind, project, revision)
        if lines:
            yield lines
        if not changed:
            await notifier.wait(ANY, seen, FALLBACK)
