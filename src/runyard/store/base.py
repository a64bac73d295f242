"""The store's connection handling, shared by every part of it (see store/__init__.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DBSession
from sqlalchemy.orm import sessionmaker

from runyard.core.resources import Resource
from runyard.store.engine import make_engine, upgrade

R = TypeVar("R", bound=Resource)
EventSpec = tuple[str, str] | tuple[str, str, str]  # (reason, message[, "Normal" | "Warning"])


def dump(model: Any) -> dict:
    return model.model_dump(mode="json", exclude_none=True)


class StoreBase:
    """Every method of the store is one short transaction, opened with one of these."""

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in steps of 1 to
        # 100 ms before it looks again: writers of this process queue here instead, and take turns at once.
        self._writer = threading.Lock() if self.is_sqlite else nullcontext()
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
        with self._writer if write else nullcontext(), self.engine.connect() as conn:
            conn.execution_options(**opts)
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[DBSession]:
        opts = {"sqlite_begin": "IMMEDIATE"} if self.is_sqlite else {}
        with self._writer, self._sessions() as s:
            s.connection(execution_options=opts)
            yield s
            s.commit()

    def insert_once(self, row_class: type, key: tuple, **values: Any) -> None:
        """Add the row with primary key `key` unless it exists; another writer adding it first is fine."""
        try:
            with self.write() as s:
                if s.get(row_class, key) is None:
                    s.add(row_class(**values))
        except IntegrityError:  # recorded concurrently
            pass
