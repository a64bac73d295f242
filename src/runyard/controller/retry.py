"""How the controller treats a failed reconcile: temporary errors are retried with exponential backoff
(capped), permanent ones mark the object Failed with a Warning event instead of looping (as kopf does).

Temporary: the store or the host is unavailable (a connection error, an I/O error), or a reconciler says
so with TemporaryError. Permanent: PermanentError, or any other error that persists over UNKNOWN_TRIES
tries, since a bug in a spec or in the code does not heal by waiting. A stale write (Conflict) is no error:
the loop reads again at once.
"""

from __future__ import annotations

from runyard.core.errors import Unavailable
from runyard.store.errors import is_outage

BASE_SECONDS = 0.5
CAP_SECONDS = 10.0
UNKNOWN_TRIES = 3


class TemporaryError(Exception):
    """Try again later: after `delay` seconds, or the backoff's next delay when None."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """Trying again cannot help: the object is marked Failed with this message."""


def is_temporary(exc: BaseException) -> bool:
    return isinstance(exc, TemporaryError | Unavailable | OSError) or is_outage(exc)


class Backoff:
    """Consecutive failures per key (a uid, or the loop itself), and the delay each one earns."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}

    def failed(self, key: str, exc: BaseException) -> float | None:
        """Seconds to wait before trying `key` again; None when it should be given up."""
        n = self._failures[key] = self._failures.get(key, 0) + 1
        if isinstance(exc, PermanentError) or (not is_temporary(exc) and n > UNKNOWN_TRIES):
            return None
        if isinstance(exc, TemporaryError) and exc.delay is not None:
            return exc.delay
        return min(CAP_SECONDS, BASE_SECONDS * 2 ** (n - 1))

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)
