"""Events: what happened to an object and why, kept until the object is deleted."""

from __future__ import annotations

import builtins
from typing import Any, cast

from sqlalchemy import Table, select

from runyard.core.clock import aware, now
from runyard.core.resources import Event, Resource
from runyard.store.base import EventSpec, StoreBase
from runyard.store.tables import EventRow

EVENTS = cast(Table, EventRow.__table__)


def event_values(uid: str | None, res: Resource, ev: EventSpec) -> dict[str, Any]:
    reason, message, *rest = ev
    m = res.metadata
    return {
        "uid": uid,
        "project": m.project,
        "kind": res.kind,
        "name": m.name,
        "type": rest[0] if rest else "Normal",
        "reason": reason,
        "message": message,
        "time": now(),
    }


def event_row(uid: str | None, res: Resource, ev: EventSpec) -> EventRow:
    return EventRow(**event_values(uid, res, ev))


class EventStore(StoreBase):
    def add_event(self, res: Resource, reason: str, message: str, type: str = "Normal") -> None:
        with self.write() as s:
            s.add(event_row(res.metadata.uid, res, (reason, message, type)))

    def events(self, uid: str) -> builtins.list[Event]:
        with self.read() as s:
            rows = s.scalars(select(EventRow).where(EventRow.uid == uid).order_by(EventRow.id)).all()
            return [
                Event(
                    type=r.type,
                    reason=r.reason,
                    message=r.message,
                    time=aware(r.time),
                    kind=r.kind,
                    name=r.name,
                )
                for r in rows
            ]
