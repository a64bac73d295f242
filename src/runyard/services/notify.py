"""In-process change notices: the controller and the API touch a uid; followers poll a dict, not the store."""

from __future__ import annotations

import threading
from collections import defaultdict


class Notifier:
    def __init__(self) -> None:
        self._versions: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._listeners: list = []

    def touch(self, uid: str) -> None:
        with self._lock:
            self._versions[uid] += 1
        for listener in self._listeners:
            listener()

    def version(self, uid: str) -> int:
        return self._versions.get(uid, 0)

    def subscribe(self, listener) -> None:
        """Call listener() (cheap, thread-safe) on every touch: the controller uses it to wake up."""
        self._listeners.append(listener)
