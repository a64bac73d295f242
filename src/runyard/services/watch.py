"""Watch a collection: every change to a kind in a project as NDJSON {type, revision, object}, like a
Kubernetes watch. Without `since`, the current objects come first as ADDED; with the `revision` a list
returned, exactly what changed after that list."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

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


async def watch(
    store: Store, notifier: Notifier, kind: type[Resource], project: str, since: int | None
) -> AsyncIterator[bytes]:
    if since is None:
        _low, since = store.change_bounds()
        for res in store.list(kind, project):
            yield _line("ADDED", since, _dump(res))
    while True:
        seen = notifier.versions(ANY)
        changes = store.changes_since(kind, project, since)
        for ch in changes:
            since = ch.seq
            if ch.type == "DELETED":
                yield _line(ch.type, ch.seq, ch.object)
                continue
            current = store.get_uid(ch.uid)
            if current is not None:  # else a DELETED follows
                yield _line(ch.type, ch.seq, _dump(current))
        if not changes:
            await notifier.wait(ANY, seen, FALLBACK)
