"""The operator's work queue, as client-go's: keys, not events, so a burst of changes to one object is one
reconcile of its latest cached state; a key being worked on is never handed to a second worker, and one
added meanwhile comes back once the first is done; `add_after` brings a key back later (a retry backoff)."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._order: deque[K] = deque()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()  # added while active: queued again on done()
        self._later: list[tuple[float, int, K]] = []
        self._seq = 0
        self._closed = False

    def add(self, key: K) -> None:
        with self._cond:
            if key in self._active:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._order.append(key)
                self._cond.notify()

    def add_after(self, key: K, seconds: float) -> None:
        if seconds <= 0:
            self.add(key)
            return
        with self._cond:
            self._seq += 1
            heapq.heappush(self._later, (time.monotonic() + seconds, self._seq, key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to work on (mark it done() after), or None on timeout or once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote()
                if self._closed:
                    return None
                if self._order:
                    key = self._order.popleft()
                    self._queued.discard(key)
                    self._active.add(key)
                    return key
                now = time.monotonic()
                if deadline is not None and deadline <= now:
                    return None
                wakes = [t for t in (deadline, self._later[0][0] if self._later else None) if t is not None]
                self._cond.wait(max(0.0, min(wakes) - now) if wakes else None)

    def done(self, key: K) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._order.append(key)
                    self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._order) + len(self._active) + len(self._later)

    def _promote(self) -> None:
        now = time.monotonic()
        while self._later and self._later[0][0] <= now:
            _, _, key = heapq.heappop(self._later)
            if key in self._active:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._order.append(key)
