"""The change feed that watches read: a row per write of a resource, in commit order."""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, func, insert, select, text
from sqlalchemy.orm import Session as DBSession

from runyard.core.clock import now
from runyard.core.resources import Resource
from runyard.store.base import StoreBase
from runyard.store.tables import ChangeRow

CHANGES = cast(Table, ChangeRow.__table__)
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
CHANGE_ORDER_LOCK = 0x72756E79617264 + 1  # serialises change-feed inserts on PostgreSQL (see _record)


class ChangeFeed(StoreBase):
    def _record(
        self, db: DBSession | Connection, uid: str, res: Resource, type_: str, obj: dict | None = None
    ) -> None:
        """Append to the change feed in the writer's transaction. On PostgreSQL sequence numbers are
        handed out before commit, so a transaction-scoped lock makes commit order and seq order agree:
        a watcher that has seen seq N has seen everything below it."""
        if not self.is_sqlite:
            db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHANGE_ORDER_LOCK})
        m = res.metadata
        values = {"uid": uid, "project": m.project, "kind": res.kind, "name": m.name, "type": type_}
        db.execute(insert(CHANGES).values(**values, time=now(), object=obj))

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
