"""Resources: every kind in one table, with optimistic concurrency and idempotent creates.

Writers that must not lose an update pass `expect_version`; a stale one raises Conflict (HTTP 409), never
overwrites.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NoReturn, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DBSession

from runyard.core.clock import aware, now
from runyard.core.errors import Conflict, FieldError, Invalid, NotFound
from runyard.core.phases import TERMINAL
from runyard.core.resources import ALL_KINDS, Resource
from runyard.store.allocations import release_in
from runyard.store.base import EventSpec, R, dump
from runyard.store.changes import ADDED, DELETED, MODIFIED, ChangeFeed
from runyard.store.documents import COLUMNS as DOCUMENT_COLUMNS
from runyard.store.documents import Document, document
from runyard.store.events import EVENTS, event_row, event_values
from runyard.store.job_notifications import JobNotificationStore
from runyard.store.tables import EventRow, IdempotencyRow, ResourceRow, TokenRow, TrackingRunRow
from runyard.store.tracking import RunInit, TrackingStore, run_hex

TERMINAL_PHASES = [p.value for p in TERMINAL]
RESOURCES = cast(Table, ResourceRow.__table__)
IDEMPOTENCY = cast(Table, IdempotencyRow.__table__)
TOKENS = cast(Table, TokenRow.__table__)


def request_fingerprint(res: Resource) -> str:
    """What a create asked for, as a digest: a retry matches it, another request under the key does not."""
    doc = res.model_dump(mode="json", exclude_none=True, exclude={"status"})
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
                "creationTimestamp": aware(row.created_at),
                "deletionTimestamp": aware(row.deletion_timestamp),
                "ownerReferences": owner,
            },
            "spec": row.spec,
            "status": row.status or {},
        }
    )


class ResourceStore(ChangeFeed, TrackingStore, JobNotificationStore):
    def create(
        self,
        res: R,
        idempotency_key: str | None = None,
        events: Iterable[EventSpec] = (),
        tracking: RunInit | None = None,
    ) -> R:
        """Insert a new resource (and its first events), in Core: the ORM's unit of work cost more than
        the SQL. With an idempotency key seen before, return what that request created; a key first
        used for a different request is refused (Invalid, as payment APIs do). A Run gets its tracking
        row in the same transaction (`tracking`: what its creator set of it)."""
        meta = res.metadata
        key = idempotency_key
        fingerprint = request_fingerprint(res) if key else None
        if key and (first := self._created_for(key, meta.project, fingerprint)) is not None:
            return cast(R, first)
        try:
            with self.connect(write=True) as conn:
                created = self._insert_resource(conn, res, events, tracking)
                if key:
                    seen = {
                        "key": key,
                        "project": meta.project,
                        "uid": created.uid,
                        "fingerprint": fingerprint,
                    }
                    conn.execute(
                        insert(IDEMPOTENCY), {**seen, "created_at": created.metadata.creationTimestamp}
                    )
        except IntegrityError:
            # the same request raced itself: answer with what the winner created
            if key and (first := self._created_for(key, meta.project, fingerprint)) is not None:
                return cast(R, first)
            raise Conflict(f"{res.kind} {meta.name!r} already exists in project {meta.project!r}") from None
        return created

    def _insert_resource(
        self, conn: Connection, res: R, events: Iterable[EventSpec] = (), tracking: RunInit | None = None
    ) -> R:
        """Insert within the caller's transaction (a job's fire creates its run with its claim)."""
        meta = res.metadata
        owner = meta.ownerReferences[0] if meta.ownerReferences else None
        uid, ts = str(uuid.uuid4()), now()
        values = {
            "uid": uid,
            "project": meta.project,
            "kind": res.kind,
            "name": meta.name,
            "labels": meta.labels,
            "annotations": meta.annotations,
            "spec": dump(res.spec),
            "status": dump(res.status),
            "phase": getattr(res.status, "phase", None),
            "owner_uid": owner.uid if owner else None,
            "owner_kind": owner.kind if owner else None,
            "owner_name": owner.name if owner else None,
            "resource_version": 1,
            "generation": 1,
            "created_at": ts,
            "updated_at": ts,
        }
        conn.execute(insert(RESOURCES), values)
        if res.kind == "Run":
            self._add_tracking_run(conn, uid, res, tracking)
        rows = [event_values(uid, res, ev) for ev in events]
        if rows:
            conn.execute(insert(EVENTS), rows)
        self._record(conn, uid, res, ADDED)
        stored = {"uid": uid, "resourceVersion": 1, "generation": 1, "creationTimestamp": ts}
        return res.model_copy(update={"metadata": meta.model_copy(update=stored)})

    def _created_for(self, key: str, project: str, fingerprint: str | None) -> Resource | None:
        """What an earlier request with this idempotency key created, if it still exists."""
        q = select(IDEMPOTENCY.c.fingerprint, RESOURCES).join(RESOURCES, RESOURCES.c.uid == IDEMPOTENCY.c.uid)
        q = q.where(IDEMPOTENCY.c.key == key, IDEMPOTENCY.c.project == project)
        with self.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        if row.fingerprint is not None and row.fingerprint != fingerprint:
            raise Invalid(
                "this Idempotency-Key was already used for a different request",
                [FieldError("Idempotency-Key", f"{key!r} was first sent with another body; use a new key")],
            )
        return to_resource(row)

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
        new_or_deleting: bool = False,
        limit: int | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[R]:
        """Filter by project, owner, phase or deletion; `unfinished`: what a controller must still act on;
        `new_or_deleting`: no status written yet, or being deleted.
        Oldest first; `limit` and `after` (the (creationTimestamp, uid) of the last item seen) page."""
        q = select(RESOURCES).where(RESOURCES.c.kind == cls.__name__)
        if project is not None:
            q = q.where(RESOURCES.c.project == project)
        if owner_uid is not None:
            q = q.where(RESOURCES.c.owner_uid == owner_uid)
        if phases is not None:
            q = q.where(RESOURCES.c.phase.in_(phases))
        if deleting is not None:
            q = q.where(
                RESOURCES.c.deletion_timestamp.is_not(None)
                if deleting
                else RESOURCES.c.deletion_timestamp.is_(None)
            )
        if unfinished:
            q = q.where(
                or_(
                    RESOURCES.c.phase.is_(None),
                    RESOURCES.c.phase.not_in(TERMINAL_PHASES),
                    RESOURCES.c.deletion_timestamp.is_not(None),
                )
            )
        if new_or_deleting:
            q = q.where(or_(RESOURCES.c.phase.is_(None), RESOURCES.c.deletion_timestamp.is_not(None)))
        with self.connect() as conn:
            rows = conn.execute(self._page(q, labels, limit, after)).all()
        return [cast(R, to_resource(r)) for r in rows]

    def list_documents(
        self,
        cls: type[Resource],
        project: str,
        labels: dict[str, str] | None = None,
        limit: int | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> builtins.list[Document]:
        """The page `list` gives, each item already as the API's JSON (see store/documents.py)."""
        q = select(*DOCUMENT_COLUMNS).where(RESOURCES.c.kind == cls.__name__, RESOURCES.c.project == project)
        with self.connect() as conn:
            rows = conn.execute(self._page(q, labels, limit, after)).all()
        return [document(r) for r in rows]

    def _page(
        self, q: Select, labels: dict[str, str] | None, limit: int | None, after: tuple[datetime, str] | None
    ) -> Select:
        """Labels, keyset paging and the order every list shares: oldest first, then by uid."""
        for key, value in (labels or {}).items():
            q = q.where(self._label_is(key, value))
        if after is not None:
            created, uid = after
            q = q.where(
                or_(
                    RESOURCES.c.created_at > created,
                    (RESOURCES.c.created_at == created) & (RESOURCES.c.uid > uid),
                )
            )
        q = q.order_by(RESOURCES.c.created_at, RESOURCES.c.uid)
        return q.limit(limit) if limit is not None else q

    def _label_is(self, key: str, value: str) -> ColumnElement[bool]:
        """labels[key] == value, in SQL so that a page's LIMIT counts matches. SQLite's JSON paths cannot
        quote every key (a '"' in it), so SQLite walks the pairs; PostgreSQL's ->> takes any key."""
        if self.is_sqlite:
            pairs = func.json_each(RESOURCES.c.labels).table_valued("key", "value")
            return exists().where(pairs.c.key == key, pairs.c.value == value)
        return RESOURCES.c.labels[key].as_string() == value

    def count(self, cls: type[Resource], phases: builtins.list[str], executed_only: bool = False) -> int:
        """`executed_only`: leave out tracking-only Runs, which hold no capacity."""
        q = select(func.count()).where(RESOURCES.c.kind == cls.__name__, RESOURCES.c.phase.in_(phases))
        if executed_only:
            runs = TrackingRunRow.__table__.c
            q = q.where(~exists().where(runs.uid == RESOURCES.c.uid, runs.tracking_only.is_(True)))
        with self.connect() as conn:
            return conn.execute(q).scalar() or 0

    def replace(self, res: R, expect_version: int | None, events: Iterable[EventSpec] = ()) -> R:
        """Write metadata and spec (a user's change) with the events that say who did it; bumps generation
        when the spec changed."""
        with self.write() as s:
            row = self._locked(s, res.metadata.uid, expect_version, res.kind, res.metadata.name)
            spec = dump(res.spec)
            if spec != row.spec:
                row.generation += 1
            row.spec = spec
            row.labels = res.metadata.labels
            row.annotations = res.metadata.annotations
            self._bump(row)
            s.add_all(event_row(row.uid, res, ev) for ev in events)
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
            "status": dump(res.status),
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
            rows = [event_values(uid, res, ev) for ev in events]
            if rows:
                conn.execute(insert(EVENTS), rows)
            if res.kind == "Run" and values.get("phase") in TERMINAL_PHASES:
                self._end_tracking_run(conn, uid)
                release_in(conn, uid)  # an ended run holds no capacity, not even for a moment
                if any(o.kind == "Job" for o in res.metadata.ownerReferences):
                    self._job_run_ended(
                        conn, res
                    )  # the notifications its job asks for: see job_notifications
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
                s.add_all(event_row(row.uid, res, ev) for ev in events)
                self._record(s, row.uid, res, MODIFIED)
            return cast(R, to_resource(row))

    def delete(self, uid: str) -> None:
        with self.write() as s:
            row = s.get(ResourceRow, uid, with_for_update=True)
            if row is None:
                return
            last = to_resource(row)
            self._record(s, uid, last, DELETED, dump(last))
            s.execute(delete(ResourceRow).where(ResourceRow.uid == uid))
            s.execute(delete(EventRow).where(EventRow.uid == uid))
            s.execute(delete(IdempotencyRow).where(IdempotencyRow.uid == uid))
            if row.kind == "Run":
                self._remove_tracking_run(s, uid)
                release_in(s, uid)
        self._run_refs.pop(run_hex(uid), None)  # again: a reader may have cached it meanwhile

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
