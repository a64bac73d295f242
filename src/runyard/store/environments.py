"""Environment records: content-addressed builds, the projects that use them and their names per project.

An environment's id is the hash of what it is made of (Python, platform, dependency files), so a record is
shared by every project that asks for the same thing: a build cache. Who builds it is settled here: the
first to insert the Building row; a build whose owner stopped heartbeating is taken over with a
conditional update. Names (`default`, or those given with `runyard env build --name`) are per project.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, String, Text, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from runyard.core.clock import aware, now
from runyard.store.base import StoreBase
from runyard.store.tables import Base, ResourceRow

BUILDING, READY, FAILED, REMOVED = "Building", "Ready", "Failed", "Removed"
ACTIVE_PHASES = ("Pending", "Queued", "Starting", "Running")


class EnvironmentRow(Base):
    """One environment (a virtualenv built by uv), by its content id. Kept when its files are removed
    (state Removed): the lock of a run that used it stays readable, and asking again rebuilds it exactly."""

    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(71), primary_key=True)  # "sha256:" + 64 hex
    state: Mapped[str] = mapped_column(String(16))  # Building | Ready | Failed | Removed
    message: Mapped[str] = mapped_column(Text, default="")
    python: Mapped[dict] = mapped_column(JSON)  # {version, implementation, path}
    platform: Mapped[str] = mapped_column(String(128))
    source_kind: Mapped[str] = mapped_column(String(16))  # requirements | uv.lock | pyproject
    source_files: Mapped[dict] = mapped_column(JSON)  # file name -> text
    lock: Mapped[str | None] = mapped_column(Text, nullable=True)
    lock_digest: Mapped[str | None] = mapped_column(String(71), nullable=True)
    packages: Mapped[list] = mapped_column(JSON, default=list)  # [{name, version}]
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    built_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # build ended
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    build_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    builder: Mapped[str] = mapped_column(String(64), default="")  # "uv 0.13.9"
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # server instance building it
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EnvironmentNameRow(Base):
    """A project's name for an environment: `default` (what its runs' files asked for last) or one given."""

    __tablename__ = "environment_names"

    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    env_id: Mapped[str] = mapped_column(String(71))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EnvironmentProjectRow(Base):
    """A project that asked for an environment (built it, or ran in it): it may list it and pin its id; an
    id another project built is not something this one can name."""

    __tablename__ = "environment_projects"

    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    env_id: Mapped[str] = mapped_column(String(71), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


COLUMNS = [c.key for c in EnvironmentRow.__table__.columns]


def _as_dict(row: EnvironmentRow) -> dict[str, Any]:
    values = {c: getattr(row, c) for c in COLUMNS}
    return {c: aware(v) if isinstance(v, datetime) else v for c, v in values.items()}


class EnvironmentStore(StoreBase):
    def env_get(self, env_id: str) -> dict[str, Any] | None:
        with self.read() as s:
            row = s.get(EnvironmentRow, env_id)
            return _as_dict(row) if row else None

    def env_claim(self, record: dict[str, Any], owner: str) -> bool:
        """Insert the Building row of a new environment; False if it exists already (someone asked first)."""
        t = now()
        try:
            with self.write() as s:
                if s.get(EnvironmentRow, record["id"]) is not None:
                    return False
                s.add(
                    EnvironmentRow(
                        **{**record, "state": BUILDING, "owner": owner, "heartbeat_at": t, "created_at": t}
                    )
                )
        except IntegrityError:  # inserted concurrently by another server
            return False
        return True

    def env_take_over(self, env_id: str, owner: str, seen: dict[str, Any]) -> bool:
        """Start building an existing record again (Failed or Removed, asked for anew; or a Building one
        whose builder died), if it is still as `seen`: only one taker wins."""
        q = update(EnvironmentRow).where(
            EnvironmentRow.id == env_id,
            EnvironmentRow.state == seen["state"],
            _same(EnvironmentRow.owner, seen["owner"]),
            _same(EnvironmentRow.heartbeat_at, seen["heartbeat_at"]),
        )
        values = {"state": BUILDING, "owner": owner, "heartbeat_at": now(), "message": "", "built_at": None}
        with self.write() as s:
            return s.execute(q.values(**values)).rowcount == 1  # type: ignore[attr-defined]

    def env_update(self, env_id: str, owner: str | None = None, **values: Any) -> bool:
        """Write fields of a record; with `owner`, only while that owner still builds it."""
        q = update(EnvironmentRow).where(EnvironmentRow.id == env_id)
        if owner is not None:
            q = q.where(EnvironmentRow.owner == owner, EnvironmentRow.state == BUILDING)
        with self.write() as s:
            return s.execute(q.values(**values)).rowcount == 1  # type: ignore[attr-defined]

    def env_heartbeat(self, owner: str) -> None:
        q = update(EnvironmentRow).where(EnvironmentRow.owner == owner, EnvironmentRow.state == BUILDING)
        with self.write() as s:
            s.execute(q.values(heartbeat_at=now()))

    def env_building(self) -> list[dict[str, Any]]:
        with self.read() as s:
            return [
                _as_dict(r) for r in s.scalars(select(EnvironmentRow).where(EnvironmentRow.state == BUILDING))
            ]

    def env_ready_unused_since(self, before: datetime) -> list[dict[str, Any]]:
        """Ready environments nobody has used (nor built) since `before`."""
        with self.read() as s:
            ready = s.scalars(select(EnvironmentRow).where(EnvironmentRow.state == READY))
            rows = [_as_dict(r) for r in ready]
        return [r for r in rows if (r["last_used_at"] or r["built_at"] or r["created_at"]) < before]

    def env_add_project(self, project: str, env_id: str) -> None:
        self.insert_once(
            EnvironmentProjectRow, (project, env_id), project=project, env_id=env_id, created_at=now()
        )

    def env_set_name(self, project: str, name: str, env_id: str) -> None:
        """Point the project's `name` at `env_id` (the project may then pin that id too)."""
        self.env_add_project(project, env_id)
        with self.write() as s:
            row = s.get(EnvironmentNameRow, (project, name))
            if row is None:
                s.add(EnvironmentNameRow(project=project, name=name, env_id=env_id, updated_at=now()))
            elif row.env_id != env_id:
                row.env_id, row.updated_at = env_id, now()

    def env_drop_names(self, project: str, name: str | None = None, env_id: str | None = None) -> int:
        q = delete(EnvironmentNameRow).where(EnvironmentNameRow.project == project)
        if name is not None:
            q = q.where(EnvironmentNameRow.name == name)
        if env_id is not None:
            q = q.where(EnvironmentNameRow.env_id == env_id)
        with self.write() as s:
            return s.execute(q).rowcount  # type: ignore[attr-defined]

    def env_named(self, project: str, name: str) -> str | None:
        with self.read() as s:
            row = s.get(EnvironmentNameRow, (project, name))
            return row.env_id if row else None

    def env_names(self, project: str) -> dict[str, list[str]]:
        """The project's names, per environment id."""
        out: dict[str, list[str]] = {}
        with self.read() as s:
            q = select(EnvironmentNameRow).where(EnvironmentNameRow.project == project)
            for row in s.scalars(q.order_by(EnvironmentNameRow.name)):
                out.setdefault(row.env_id, []).append(row.name)
        return out

    def env_ids_of(self, project: str, prefix: str = "") -> list[str]:
        """Ids of the environments the project asked for, those starting with `prefix` if given."""
        with self.read() as s:
            q = select(EnvironmentProjectRow.env_id).where(EnvironmentProjectRow.project == project)
            if prefix:
                q = q.where(EnvironmentProjectRow.env_id.startswith(prefix, autoescape=True))
            return list(s.scalars(q))

    def env_list(self, ids: list[str]) -> list[dict[str, Any]]:
        with self.read() as s:
            rows = s.scalars(select(EnvironmentRow).where(EnvironmentRow.id.in_(ids)))
            return [_as_dict(r) for r in rows]

    def env_users(self, env_id: str) -> list[tuple[str, str]]:
        """(project, name) of the unfinished runs that use the environment."""
        q = select(ResourceRow.project, ResourceRow.name, ResourceRow.status).where(
            ResourceRow.kind == "Run", ResourceRow.phase.in_(ACTIVE_PHASES)
        )
        with self.read() as s:
            rows = s.execute(q).all()
        return [(p, n) for p, n, st in rows if ((st or {}).get("environment") or {}).get("id") == env_id]


def _same(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value
