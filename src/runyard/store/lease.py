"""One controller per store. Two servers reconciling the same database would each launch the same runs,
so a server holds a lock for its lifetime: a PostgreSQL session-level advisory lock, or an flock beside
the SQLite file. Both vanish with the process, even on kill -9, so a crash never leaves a stale lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import Connection, text

from runyard.core.errors import Conflict
from runyard.store import Store

ADVISORY_KEY = 0x72756E79617264  # "runyard"


class ControllerLock:
    def __init__(self, store: Store):
        self.store = store
        self._conn: Connection | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise Conflict naming what holds it."""
        if self.store.is_sqlite:
            self._acquire_file(Path(self.store.engine.url.database or "runyard.db"))
        else:
            self._acquire_advisory()

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session, and its advisory lock with it
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _acquire_advisory(self) -> None:
        conn = self.store.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}).scalar()
        conn.commit()
        if not got:
            conn.close()
            raise Conflict(
                "another runyard server is already running against this PostgreSQL database; "
                "stop it first (two controllers would launch the same runs twice)"
            )
        self._conn = conn

    def _acquire_file(self, database: Path) -> None:
        path = database.with_name(database.name + ".controller.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Conflict(
                f"another runyard server (pid {holder}) is already running against {database}; "
                "stop it first (two controllers would launch the same runs twice)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
