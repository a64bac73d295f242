"""In-process change notices. The controller and the API touch a uid when its record changed, the runtime
when a run wrote output; the controller queues touched uids, and log followers await them instead of
polling the store or the log files."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable

ANY = "*"  # the pseudo-uid touched by every change


class Notifier:
    def __init__(self) -> None:
        self._state: defaultdict[str, int] = defaultdict(int)
        self._output: defaultdict[str, int] = defaultdict(int)
        self._waiters: defaultdict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = defaultdict(
            list
        )
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call listener(uid) (cheap, thread-safe) on every state touch: the controller queues the uid."""
        self._listeners.append(listener)

    def touch(self, uid: str, wake_controller: bool = True) -> None:
        """The record of `uid` changed. The controller's own writes pass wake_controller=False: it already
        knows, and waking itself would only re-read what it just wrote."""
        self._bump(self._state, uid)
        self._bump(self._state, ANY)  # watches of whole collections wait on this one
        if wake_controller:
            for listener in self._listeners:
                listener(uid)

    def output(self, uid: str) -> None:
        """Run `uid` wrote new output."""
        self._bump(self._output, uid)

    def versions(self, uid: str) -> tuple[int, int]:
        return self._state.get(uid, 0), self._output.get(uid, 0)

    async def wait(self, uid: str, seen: tuple[int, int], timeout: float) -> None:
        """Return once versions(uid) differs from `seen`, or after `timeout` (what a missed notice costs)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self.versions(uid) != seen:
                return
            self._waiters[uid].append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                waiters = self._waiters.get(uid)
                if waiters and (loop, fut) in waiters:
                    waiters.remove((loop, fut))
                    if not waiters:
                        del self._waiters[uid]

    def _bump(self, versions: defaultdict[str, int], uid: str) -> None:
        with self._lock:
            versions[uid] += 1
            waiters = self._waiters.pop(uid, [])
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
