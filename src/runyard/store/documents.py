"""Resources as the API's JSON, straight from their rows.

A list of thousands spent most of its time validating each row into a model and dumping it again. The
stored spec and status are what the models dumped when they were written, so their text goes out as it
is, and only the metadata is assembled here: the same document `model_dump(mode="json", exclude_none=True)`
gives (a test compares the two for every kind).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import TypeAdapter
from sqlalchemy import Row, Table, Text, func
from sqlalchemy import cast as sql_cast

from runyard.core.clock import aware
from runyard.core.resources import API_VERSION
from runyard.store.tables import ResourceRow

RESOURCES = cast(Table, ResourceRow.__table__)
_DATETIME = TypeAdapter(datetime)  # pydantic's own format, as model_dump writes it
_ZERO = timedelta(0)


def _text(name: str, empty: str | None = None):
    """A JSON column as its stored text (PostgreSQL's driver would otherwise parse it)."""
    column = sql_cast(RESOURCES.c[name], Text)
    return (func.coalesce(column, empty) if empty else column).label(name)


COLUMNS = (
    *(RESOURCES.c[n] for n in ("uid", "project", "kind", "name", "resource_version", "generation")),
    *(RESOURCES.c[n] for n in ("created_at", "deletion_timestamp", "owner_uid", "owner_kind", "owner_name")),
    _text("labels", "{}"),
    _text("annotations", "{}"),
    _text("spec"),
    _text("status", "{}"),
)


@dataclass(frozen=True)
class Document:
    """One resource as JSON text, with the (creationTimestamp, uid) a page continues after."""

    json: str
    created: datetime
    uid: str


def _time(dt: datetime) -> str:
    """As pydantic writes it: UTC as "...Z" (what the store holds, SQLite's naive values included)."""
    if dt.tzinfo is None or dt.utcoffset() == _ZERO:
        return dt.replace(tzinfo=None).isoformat() + "Z"
    return cast(str, _DATETIME.dump_python(dt, mode="json"))


def _object(text: str) -> str:
    return "{}" if text == "null" else text  # JSON null where a mapping belongs reads as empty


def document(row: Row[Any]) -> Document:
    """The row (selected with COLUMNS) as the document the API sends. Thousands go out per list, so the
    text is assembled with two small json.dumps a row."""
    head = {"name": row.name, "project": row.project}
    tail: dict[str, Any] = {
        "uid": row.uid,
        "resourceVersion": row.resource_version,
        "generation": row.generation,
        "creationTimestamp": _time(row.created_at),
    }
    if row.deletion_timestamp is not None:
        tail["deletionTimestamp"] = _time(row.deletion_timestamp)
    owner = [{"kind": row.owner_kind, "name": row.owner_name, "uid": row.owner_uid}] if row.owner_uid else []
    tail["ownerReferences"] = owner
    text = (
        f'{{"apiVersion":"{API_VERSION}","kind":"{row.kind}","metadata":{json.dumps(head)[:-1]},'
        f'"labels":{_object(row.labels)},"annotations":{_object(row.annotations)},{json.dumps(tail)[1:]},'
        f'"spec":{row.spec},"status":{_object(row.status)}}}'
    )
    return Document(text, cast(datetime, aware(row.created_at)), row.uid)
