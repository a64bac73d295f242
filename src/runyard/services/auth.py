"""Bearer tokens: the admin token made at first start, run-scoped tokens, and who may touch which project."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from runyard.core.clock import now
from runyard.core.errors import Forbidden, Unauthorized
from runyard.store import Store
from runyard.store.tables import TokenRow

TOKEN_PREFIX = "ryd_"


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: str  # "admin" | "run"
    project: str | None  # None: every project
    run_uid: str | None = None

    def check_project(self, project: str) -> None:
        if self.project is not None and self.project != project:
            raise Forbidden(f"this token may only access project {self.project!r}, not {project!r}")

    def check_admin(self) -> None:
        if self.role != "admin":
            raise Forbidden("this needs an admin token")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    store: Store, name: str, role: str, project: str | None = None, run_uid: str | None = None
) -> str:
    """Create a token and return its secret: the only time it exists in plain text."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(
        TokenRow(
            id=secrets.token_hex(8),
            secret_hash=hash_secret(secret),
            name=name,
            role=role,
            project=project,
            run_uid=run_uid,
            created_at=now(),
            revoked=False,
        )
    )
    return secret


def authenticate(store: Store, authorization: str | None) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>' (see `runyard up`)")
    row = store.token_by_hash(hash_secret(authorization[7:].strip()))
    if row is None:
        raise Unauthorized("unknown or revoked token")
    return Principal(row.id, row.name, row.role, row.project, row.run_uid)


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
