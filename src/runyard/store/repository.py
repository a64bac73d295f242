"""The Store: resources with optimistic concurrency, events, projects, tokens, idempotency, snapshots.

Every method is one short transaction. Writers that must not lose an update pass `expect_version`; a stale
one raises Conflict (HTTP 409), never overwrites.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar, cast

from sqlalchemy import Connection, Row, Table, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import sessionmaker

from runyard.core.errors import Conflict, NotFound
from runyard.core.phases import TERMINAL
from runyard.core.resources import ALL_KINDS, Event, Resource
from runyard.store.engine import make_engine, upgrade
from runyard.store.tables import (
    ChangeRow,
    EventRow,
    IdempotencyRow,
    ProjectRow,
    ResourceRow,
    SnapshotRow,
    TokenRow,
)

TERMINAL_PHASES = [p.value for p in TERMINAL]
R = TypeVar("R", bound=Resource)
RESOURCES = cast(Table, ResourceRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
TOKENS = cast(Table, TokenRow.__table__)
CHANGES = cast(Table, ChangeRow.__table__)


def now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def to_resource(row: ResourceRow | Row[Any]) -> Resource:
    """An ORM row or a Core row of the resources table, as its typed resource."""
    owner = [{"kind": row.owner_kind, "name": row.owner_name, "uid": row.owner_uid}] if row.owner_uid else []
    return ALL_KINDS[row.kind].model_validate(
        {
            "kind": row.kind,
            "metadata": {
                "name": row.name,
                "project": row.project,
                "labels": row.labels or {},
                "annotations": row.annotations or {},
                "uid": row.uid,
                "resourceVersion": row.resource_version,
                "generation": row.generation,
                "creationTimestamp": _aware(row.created_at),
                "deletionTimestamp": _aware(row.deletion_timestamp),
                "ownerReferences": owner,
            },
            "spec": row.spec,
            "status": row.status or {},
        }
    )


EventSpec = tuple[str, str] | tuple[str, str, str]  # (reason, message[, "Normal" | "Warning"])


def _event_values(uid: str | None, res: Resource, ev: EventSpec) -> dict[str, Any]:
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


ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
CHANGE_ORDER_LOCK = 0x72756E79617264 + 1  # serialises change-feed inserts on PostgreSQL (see _record)


def _event_row(uid: str | None, res: Resource, ev: EventSpec) -> EventRow:
    return EventRow(**_event_values(uid, res, ev))


def _dump(model: Any) -> dict:
    return model.model_dump(mode="json", exclude_none=True)


class Store:
    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._known_projects: set[str] = set()  # projects are never deleted yet, so a cache is safe

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[DBSession]:
        with self._sessions() as s:
            yield s

    @contextmanager
    def connect(self, write: bool = False) -> Iterator[Connection]:
        """A Core connection in a transaction: the hot paths (reads, status writes) skip the ORM's
        unit of work, which cost more than the SQL itself."""
        opts = {"sqlite_begin": "IMMEDIATE"} if write and self.is_sqlite else {}
        with self.engine.connect() as conn:
            conn.execution_options(**opts)
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[DBSession]:
        opts = {"sqlite_begin": "IMMEDIATE"} if self.is_sqlite else {}
        with self._sessions() as s:
            s.connection(execution_options=opts)
            yield s
            s.commit()

    # -- resources ---------------------------------------------------------------------------------------

    def create(self, res: R, idempotency_key: str | None = None, events: Iterable[EventSpec] = ()) -> R:
        """Insert a new resource (and its first events). With an idempotency key seen before, return what
        that request created instead."""
        meta = res.metadata
        with self.write() as s:
            if idempotency_key:
                seen = s.get(IdempotencyRow, (idempotency_key, meta.project))
                if seen is not None:
                    row = s.get(ResourceRow, seen.uid)
                    if row is not None:
                        return cast(R, to_resource(row))
            owner = meta.ownerReferences[0] if meta.ownerReferences else None
            ts = now()
            row = ResourceRow(
                uid=str(uuid.uuid4()),
                project=meta.project,
                kind=res.kind,
                name=meta.name,
                labels=meta.labels,
                annotations=meta.annotations,
                spec=_dump(res.spec),
                status=_dump(res.status),
                phase=getattr(res.status, "phase", None),
                owner_uid=owner.uid if owner else None,
                owner_kind=owner.kind if owner else None,
                owner_name=owner.name if owner else None,
                resource_version=1,
                generation=1,
                created_at=ts,
                updated_at=ts,
            )
            s.add(row)
            if idempotency_key:
                s.add(IdempotencyRow(key=idempotency_key, project=meta.project, uid=row.uid, created_at=ts))
            s.add_all(_event_row(row.uid, res, ev) for ev in events)
            try:
                s.flush()
                self._record(s, row.uid, res, ADDED)
                return cast(R, to_resource(row))
            except IntegrityError:
                s.rollback()
        if idempotency_key:  # the same request raced itself: answer with what the winner created
            with self.read() as s:
                seen = s.get(IdempotencyRow, (idempotency_key, meta.project))
                row = s.get(ResourceRow, seen.uid) if seen else None
                if row is not None:
                    return cast(R, to_resource(row))
        raise Conflict(f"{res.kind} {meta.name!r} already exists in project {meta.project!r}")

    def get(self, cls: type[R], project: str, name: str) -> R:
        kind = cls.__name__
        q = select(RESOURCES).where(
            RESOURCES.c.kind == kind, RESOURCES.c.project == project, RESOURCES.c.name == name
        )
        with self.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise NotFound(f"{kind} {name!r} not found in project {project!r}")
        return cast(R, to_resource(row))

    def get_uid(self, uid: str) -> Resource | None:
        with self.connect() as conn:
            row = conn.execute(select(RESOURCES).where(RESOURCES.c.uid == uid)).first()
        return to_resource(row) if row else None

    def list(
        self,
        cls: type[R],
        project: str | None = None,
        labels: dict[str, str] | None = None,
        owner_uid: str | None = None,
        phases: list[str] | None = None,
        deleting: bool | None = None,
        unfinished: bool = False,
        limit: int | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[R]:
        """Filter by project, owner, phase or deletion; `unfinished`: what a controller must still act on.
        Oldest first; `limit` and `after` (the (creationTimestamp, uid) of the last item seen) page."""
        q = select(RESOURCES).where(ResourceRow.kind == cls.__name__)
        if project is not None:
            q = q.where(ResourceRow.project == project)
        if owner_uid is not None:
            q = q.where(ResourceRow.owner_uid == owner_uid)
        if phases is not None:
            q = q.where(ResourceRow.phase.in_(phases))
        if deleting is not None:
            q = q.where(
                ResourceRow.deletion_timestamp.is_not(None)
                if deleting
                else ResourceRow.deletion_timestamp.is_(None)
            )
        if unfinished:
            q = q.where(
                or_(
                    ResourceRow.phase.is_(None),
                    ResourceRow.phase.not_in(TERMINAL_PHASES),
                    ResourceRow.deletion_timestamp.is_not(None),
                )
            )
        if after is not None:
            created, uid = after
            q = q.where(
                or_(
                    RESOURCES.c.created_at > created,
                    (RESOURCES.c.created_at == created) & (RESOURCES.c.uid > uid),
                )
            )
        q = q.order_by(RESOURCES.c.created_at, RESOURCES.c.uid)
        if limit is not None:
            q = q.limit(limit)
        with self.connect() as conn:
            rows = conn.execute(q).all()
        items = [cast(R, to_resource(r)) for r in rows]
        if labels:
            items = [r for r in items if all(r.metadata.labels.get(k) == v for k, v in labels.items())]
        return items

    def count(self, cls: type[Resource], phases: builtins.list[str]) -> int:
        q = select(func.count()).where(RESOURCES.c.kind == cls.__name__, RESOURCES.c.phase.in_(phases))
        with self.connect() as conn:
            return conn.execute(q).scalar() or 0

    def replace(self, res: R, expect_version: int | None, events: Iterable[EventSpec] = ()) -> R:
        """Write metadata and spec (a user's change) with the events that say who did it; bumps generation
        when the spec changed."""
        with self.write() as s:
            row = self._locked(s, res.metadata.uid, expect_version, res.kind, res.metadata.name)
            spec = _dump(res.spec)
            if spec != row.spec:
                row.generation += 1
            row.spec = spec
            row.labels = res.metadata.labels
            row.annotations = res.metadata.annotations
            self._bump(row)
            s.add_all(_event_row(row.uid, res, ev) for ev in events)
            self._record(s, row.uid, res, MODIFIED)
            return cast(R, to_resource(row))

    def update_status(
        self,
        res: R,
        expect_version: int | None = None,
        events: Iterable[EventSpec] = (),
        revoke_run_tokens: bool = False,
    ) -> R:
        """The status subresource (only the controller calls this), with the events that explain it and,
        for a run that has ended, the revocation of its tokens: all in one transaction. One UPDATE with
        the version in its WHERE clause is the optimistic check, atomic on SQLite and PostgreSQL alike."""
        expect = res.metadata.resourceVersion if expect_version is None else expect_version
        uid = res.uid
        values: dict[str, Any] = {
            "status": _dump(res.status),
            "resource_version": RESOURCES.c.resource_version + 1,
            "updated_at": now(),
        }
        if getattr(res.status, "phase", None):
            values["phase"] = res.status.phase
        stmt = update(RESOURCES).where(RESOURCES.c.uid == uid)
        if expect is not None:
            stmt = stmt.where(RESOURCES.c.resource_version == expect)
        returning = (RESOURCES.c.resource_version, RESOURCES.c.generation)
        with self.connect(write=True) as conn:
            got = conn.execute(stmt.values(**values).returning(*returning)).first()
            if got is None:
                self._raise_stale(conn, res, expect)
            rows = [_event_values(uid, res, ev) for ev in events]
            if rows:
                conn.execute(insert(EVENTS), rows)
            if revoke_run_tokens:
                conn.execute(update(TOKENS).where(TOKENS.c.run_uid == uid).values(revoked=True))
            self._record(conn, uid, res, MODIFIED)
        meta = {"resourceVersion": got.resource_version, "generation": got.generation}
        return res.model_copy(update={"metadata": res.metadata.model_copy(update=meta)})

    @staticmethod
    def _raise_stale(conn: Connection, res: Resource, expect: int | None) -> NoReturn:
        current = conn.execute(
            select(RESOURCES.c.resource_version).where(RESOURCES.c.uid == res.uid)
        ).scalar()
        kind, name = res.kind, res.metadata.name
        if current is None:
            raise NotFound(f"{kind} {name!r} not found")
        raise Conflict(
            f"{kind} {name!r} was modified (resourceVersion is {current}, "
            f"the write was based on {expect}); read it again and retry"
        )

    def mark_deleted(self, res: R, events: Iterable[EventSpec] = ()) -> R:
        with self.write() as s:
            row = s.get(ResourceRow, res.metadata.uid, with_for_update=True)
            if row is None:
                raise NotFound(f"{res.kind} {res.metadata.name!r} not found")
            if row.deletion_timestamp is None:
                row.deletion_timestamp = now()
                self._bump(row)
                s.add_all(_event_row(row.uid, res, ev) for ev in events)
                self._record(s, row.uid, res, MODIFIED)
            return cast(R, to_resource(row))

    def delete(self, uid: str) -> None:
        with self.write() as s:
            row = s.get(ResourceRow, uid, with_for_update=True)
            if row is None:
                return
            last = to_resource(row)
            self._record(s, uid, last, DELETED, _dump(last))
            s.execute(delete(ResourceRow).where(ResourceRow.uid == uid))
            s.execute(delete(EventRow).where(EventRow.uid == uid))
            s.execute(delete(IdempotencyRow).where(IdempotencyRow.uid == uid))

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

    def _locked(self, s: DBSession, uid: str | None, expect: int | None, kind: str, name: str) -> ResourceRow:
        # FOR UPDATE: on PostgreSQL two writers must not both pass the version check (SQLite's
        # BEGIN IMMEDIATE already serializes them).
        row = s.get(ResourceRow, uid, with_for_update=True) if uid else None
        if row is None:
            raise NotFound(f"{kind} {name!r} not found")
        if expect is not None and row.resource_version != expect:
            raise Conflict(
                f"{kind} {name!r} was modified (resourceVersion is {row.resource_version}, "
                f"the write was based on {expect}); read it again and retry"
            )
        return row

    @staticmethod
    def _bump(row: ResourceRow) -> None:
        row.resource_version += 1
        row.updated_at = now()

    # -- events ------------------------------------------------------------------------------------------

    def add_event(self, res: Resource, reason: str, message: str, type: str = "Normal") -> None:
        with self.write() as s:
            s.add(_event_row(res.metadata.uid, res, (reason, message, type)))

    def events(self, uid: str) -> builtins.list[Event]:
        with self.read() as s:
            rows = s.scalars(select(EventRow).where(EventRow.uid == uid).order_by(EventRow.id)).all()
            return [
                Event(
                    type=r.type,
                    reason=r.reason,
                    message=r.message,
                    time=_aware(r.time),
                    kind=r.kind,
                    name=r.name,
                )
                for r in rows
            ]

    # -- projects ----------------------------------------------------------------------------------------

    def ensure_project(self, name: str) -> None:
        if name in self._known_projects:
            return
        with self.write() as s:
            if s.get(ProjectRow, name) is None:
                s.add(ProjectRow(name=name, created_at=now()))
        self._known_projects.add(name)

    def projects(self) -> builtins.list[str]:
        with self.read() as s:
            return list(s.scalars(select(ProjectRow.name).order_by(ProjectRow.name)))

    # -- tokens ------------------------------------------------------------------------------------------

    def add_token(self, row: TokenRow) -> None:
        with self.write() as s:
            s.add(row)

    def token_by_hash(self, secret_hash: str) -> Row[Any] | None:
        """The token's row (id, name, role, project, run_uid), unless it is unknown or revoked."""
        with self.connect() as conn:
            row = conn.execute(select(TOKENS).where(TOKENS.c.secret_hash == secret_hash)).first()
        return None if row is None or row.revoked else row

    def has_admin_token(self) -> bool:
        with self.read() as s:
            return s.scalars(select(TokenRow.id).where(TokenRow.role == "admin")).first() is not None

    def revoke_run_tokens(self, run_uid: str) -> None:
        with self.write() as s:
            s.execute(update(TokenRow).where(TokenRow.run_uid == run_uid).values(revoked=True))

    # -- snapshots ---------------------------------------------------------------------------------------

    def put_snapshot(self, snapshot_id: str, manifest: dict) -> None:
        with self.write() as s:
            if s.get(SnapshotRow, snapshot_id) is None:
                s.add(SnapshotRow(id=snapshot_id, manifest=manifest, created_at=now()))

    def get_snapshot(self, snapshot_id: str) -> dict:
        with self.read() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is None:
                raise NotFound(f"snapshot {snapshot_id} not found")
            return row.manifest
