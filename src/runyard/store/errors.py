"""Which database errors mean the store cannot be reached (an outage: retry later), as opposed to a query
it refused (a bug or bad input: retrying cannot help). One place, for the API's 503 and the controller's
backoff alike."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout


def is_outage(exc: BaseException) -> bool:
    """The store cannot be reached (refused, lost, pool exhausted)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout)
