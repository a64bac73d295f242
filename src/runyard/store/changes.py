"""The change feed that watches read: a row per write of a resource, in commit order per (kind, project)."""

from __future__ import annotations

import builtins
import hashlib
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, func, insert, select, text
from sqlalchemy.orm import Session as DBSession

from runyard.core.clock import now
from runyard.core.resources import Resource
from runyard.store.base import StoreBase
from runyard.store.tables import ChangeRow

CHANGES = cast(Table, ChangeRow.__table__)
_INSERT = insert(CHANGES)  # built once: every write appends a change
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
# PostgreSQL advisory locks in the two-int key space (apart from the controller's bigint lock): this class,
# and a hash of the (kind, project) a change belongs to. See _record and revision.
CHANGE_ORDER_CLASS = 0x72796366  # "rycf"


def stream_key(kind: str, project: str) -> int:
    """The change stream of (kind, project) as a signed 32-bit lock key; a collision only serializes."""
    digest = hashlib.blake2b(f"{kind}/{project}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class ChangeFeed(StoreBase):
    def _record(
        self, db: DBSession | Connection, uid: str, res: Resource, type_: str, obj: dict | None = None
    ) -> None:
        """Append to the change feed in the writer's transaction. On PostgreSQL sequence numbers are
        handed out before commit, so writers of one (kind, project) take its transaction-scoped lock: in
        each stream, seq order is commit order, and a watcher of it that has seen seq N has seen every
        change of it below N. Writers of other streams go on in parallel."""
        m = res.metadata
        if not self.is_sqlite:
            key = {"cls": CHANGE_ORDER_CLASS, "key": stream_key(res.kind, m.project)}
            db.execute(text("SELECT pg_advisory_xact_lock(:cls, :key)"), key)
        values = {"uid": uid, "project": m.project, "kind": res.kind, "name": m.name, "type": type_}
        db.execute(_INSERT, {**values, "time": now(), "object": obj})

    def revision(self, cls: type[Resource], project: str) -> int:
        """A point to watch (kind, project) from: every change of it numbered up to here has committed,
        and every later one will be numbered above. Streams commit out of seq order with each other, so
        on PostgreSQL this waits for the stream's writer in flight (sharing its lock) before reading."""
        with self.connect() as conn:
            if not self.is_sqlite:
                key = {"cls": CHANGE_ORDER_CLASS, "key": stream_key(cls.__name__, project)}
                conn.execute(text("SELECT pg_advisory_xact_lock_shared(:cls, :key)"), key)
            return conn.execute(select(func.max(CHANGES.c.seq))).scalar() or 0

    def changes_since(
        self, cls: type[Resource], project: str, seq: int, limit: int = 500
    ) -> builtins.list[Row[Any]]:
        q = select(CHANGES).where(
            CHANGES.c.kind == cls.__name__, CHANGES.c.project == project, CHANGES.c.seq > seq
        )
        with self.connect() as conn:
            return list(conn.execute(q.order_by(CHANGES.c.seq).limit(limit)).all())

    def change_bounds(self) -> tuple[int, int]:
        """(oldest kept, newest) sequence numbers of the change feed; (0, 0) when empty."""
        with self.connect() as conn:
            low, high = conn.execute(select(func.min(CHANGES.c.seq), func.max(CHANGES.c.seq))).one()
        return low or 0, high or 0

    def prune_changes(self, keep: timedelta) -> int:
        """Forget changes older than `keep`: a watch that fell further behind must list again."""
        with self.connect(write=True) as conn:
            return conn.execute(delete(CHANGES).where(CHANGES.c.time < now() - keep)).rowcount
