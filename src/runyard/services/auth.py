"""Bearer tokens and roles: who may read, write or administer which project.

Roles: admin may do everything; editor reads and writes in its project (every project when it has none);
viewer only reads; run (a token the controller gives each run attempt) is an editor of its one project.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import event

from runyard.core.clock import aware, now
from runyard.core.errors import Conflict, FieldError, Forbidden, Invalid, NotFound, Unauthorized
from runyard.store import Store
from runyard.store.tables import TokenRow

TOKEN_PREFIX = "ryd_"
WRITERS = ("admin", "editor", "run")


class Access(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: str  # "admin" | "editor" | "viewer" | "run"
    project: str | None  # None: every project
    run_uid: str | None = None

    def authorize(self, need: Access, project: str | None = None) -> None:
        """Raise Forbidden unless this token may do `need` (on `project`, when the call is about one)."""
        if self.role == "admin":
            return
        if need is Access.ADMIN:
            raise Forbidden("this needs an admin token")
        if project is not None and self.project is not None and self.project != project:
            raise Forbidden(f"this token may only access project {self.project!r}, not {project!r}")
        if need is Access.WRITE and self.role not in WRITERS:
            raise Forbidden(f"a {self.role} token may only read")

    def sees(self, project: str) -> bool:
        return self.role == "admin" or self.project in (None, project)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    store: Store, name: str, role: str, project: str | None = None, run_uid: str | None = None
) -> str:
    """Create a token and return its secret: the only time it exists in plain text."""
    return _issue(store, name, role, project, run_uid)[1]


def _issue(
    store: Store, name: str, role: str, project: str | None, run_uid: str | None
) -> tuple[TokenRow, str]:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        id=secrets.token_hex(8),
        secret_hash=hash_secret(secret),
        name=name,
        role=role,
        project=project,
        run_uid=run_uid,
        created_at=now(),
        revoked=False,
    )
    store.add_token(row)
    return row, secret


def token_doc(row) -> dict:
    """A token as the API shows it: never its secret or hash."""
    doc = {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "project": row.project,
        "createdAt": iso(row.created_at),
        "revoked": bool(row.revoked),
    }
    if row.run_uid:
        doc["runUid"] = row.run_uid
    return doc


def iso(when: datetime) -> str:
    """RFC 3339 in UTC (SQLite hands back naive datetimes)."""
    return (aware(when) or when).isoformat()


def create_token(store: Store, name: str, role: str, project: str | None) -> dict:
    """A new token of an issuable role; its secret is in the answer, once."""
    if project is not None and project not in store.projects():
        raise Invalid(
            "no such project", [FieldError("project", f"no project named {project!r}: create it first")]
        )
    row, secret = _issue(store, name, role, project, None)
    return {**token_doc(row), "token": secret}


def revoke_token(store: Store, token_id: str) -> dict:
    """Revoke a token; never the last admin token that works, which would lock every admin out."""
    admins = [t.id for t in store.tokens() if t.role == "admin" and not t.revoked]
    if admins == [token_id]:
        raise Conflict("this is the only admin token left: create another admin token before revoking it")
    row = store.revoke_token(token_id)
    if row is None:
        raise NotFound(f"token {token_id!r} not found")
    return token_doc(row)


def authenticate(store: Store, authorization: str | None) -> Principal:
    secret_hash = _secret_hash(authorization)
    cache = token_cache(store)
    who = cache.get(secret_hash)
    if who is None:
        generation = cache.generation
        row = store.token_by_hash(secret_hash)
        if row is None:
            raise Unauthorized("unknown or revoked token")
        who = Principal(row.id, row.name, row.role, row.project, row.run_uid)
        cache.put(secret_hash, who, generation)
    return who


def cached_principal(store: Store, authorization: str | None) -> Principal | None:
    """The token's principal if this process checked it a moment ago, without touching the store (so
    without blocking an event loop); None when the store must be asked (`authenticate`)."""
    return token_cache(store).get(_secret_hash(authorization))


def _secret_hash(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>' (see `runyard up`)")
    return hash_secret(authorization[7:].strip())


class TokenCache:
    """Principals of tokens checked in the last `ttl` seconds, so that a hot route (MLflow's log-metric)
    does not read the tokens table on every call.

    A revocation made through this process (the tokens API, the controller ending a run) empties it at
    once: every write to the tokens table bumps `generation`, when it is executed and again when its
    connection goes back to the pool (after the commit), and a lookup that raced with a write is not
    kept. `ttl` bounds how long a revocation made by another process goes unseen.
    """

    def __init__(self, ttl: float = 2.0, max_entries: int = 10_000):
        self.ttl, self.max_entries = ttl, max_entries
        self.generation = 0
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, secret_hash: str) -> Principal | None:
        hit = self._entries.get(secret_hash)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, secret_hash: str, who: Principal, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return  # a token was written meanwhile: what was read may be stale
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[secret_hash] = (who, time.monotonic() + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def watch(self, engine: Any) -> None:
        """Clear on every statement that writes the tokens table, and again once it is committed."""
        table = TokenRow.__tablename__

        def executed(conn, _cursor, statement: str, *_args) -> None:
            words = statement.lstrip()[:40].lower()
            if words.startswith(("update " + table, "delete from " + table)):
                conn.info["runyard_tokens_written"] = True
                self.clear()

        def checked_in(_dbapi_conn, record) -> None:
            if record is not None and record.info.pop("runyard_tokens_written", False):
                self.clear()

        event.listen(engine, "after_cursor_execute", executed)
        event.listen(engine.pool, "checkin", checked_in)


_caches: weakref.WeakKeyDictionary[Store, TokenCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def token_cache(store: Store) -> TokenCache:
    cache = _caches.get(store)
    if cache is None:
        with _caches_lock:
            cache = _caches.get(store)
            if cache is None:
                cache = _caches[store] = TokenCache()
                cache.watch(store.engine)
    return cache


def ensure_admin_token(store: Store, home: Path) -> None:
    """At first start, make an admin token and leave it (mode 600) where the local CLI finds it."""
    path = home / "admin-token"
    if store.has_admin_token() and path.exists():
        return
    secret = issue_token(store, "admin (created at first start)", "admin")
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(secret + "\n")
    tmp.replace(path)
