"""In-process change notices: the controller and the API touch a uid; followers poll a dict, not the store."""

from __future__ import annotations

import threading
from collections import defaultdict


class Notifier:
    def __init__(self) -> None:
        self._versions: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._listeners: list = []

    def touch(self, uid: str, wake_controller: bool = True) -> None:
        """Something about `uid` changed. The controller's own writes pass wake_controller=False: it
        already knows, and waking itself would only re-read what it just wrote."""
        with self._lock:
            self._versions[uid] += 1
        if wake_controller:
            for listener in self._listeners:
                listener(uid)

    def version(self, uid: str) -> int:
        return self._versions.get(uid, 0)

    def subscribe(self, listener) -> None:
        """Call listener(uid) (cheap, thread-safe) on every touch: the controller queues the uid."""
        self._listeners.append(listener)
