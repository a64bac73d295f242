"""The ORM tables. Alembic migrations under migrations/ must agree with these (a test checks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ResourceRow(Base):
    """Every kind (Session, Experiment, Job, Model, Run) in one table: one model, one watch, one event log."""

    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("project", "kind", "name", name="uq_resources_project_kind_name"),
        Index("ix_resources_kind_phase", "kind", "phase"),
        Index("ix_resources_owner_uid", "owner_uid"),
        Index("ix_resources_kind_project_created", "kind", "project", "created_at", "uid"),  # list order
    )

    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(63))
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict] = mapped_column(JSON, default=dict)
    spec: Mapped[dict] = mapped_column(JSON)
    status: Mapped[dict] = mapped_column(JSON, default=dict)
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    owner_uid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    owner_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    owner_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    resource_version: Mapped[int] = mapped_column(BigInteger, default=1)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deletion_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_uid", "uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36))
    project: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProjectRow(Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    """API tokens, stored as SHA-256 of the secret: tokens are 256-bit random, so a slow hash buys nothing."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # "admin" | "run"
    project: Mapped[str | None] = mapped_column(String(63), nullable=True)  # None: every project
    run_uid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class IdempotencyRow(Base):
    """A client request id seen once: a retried submit returns the first result instead of a second run."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    uid: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # SHA-256 of the request the key was first used for (None for keys stored before it was recorded)
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SnapshotRow(Base):
    """A snapshot is a manifest {path: {sha256, mode, size}}; file contents live in the blob store."""

    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(String(71), primary_key=True)  # "sha256:" + hex of the manifest
    manifest: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SnapshotProjectRow(Base):
    """A project that registered a snapshot: resources may only name snapshots of their own project."""

    __tablename__ = "snapshot_projects"

    snapshot_id: Mapped[str] = mapped_column(String(71), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BlobProjectRow(Base):
    """A project that uploaded a blob: only its own blobs count as present when it registers a snapshot."""

    __tablename__ = "blob_projects"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChangeRow(Base):
    """The change feed that watches read: a row per write of a resource, numbered in commit order."""

    __tablename__ = "changes"
    # AUTOINCREMENT on SQLite: without it, pruning the newest rows would let their numbers be reused.
    __table_args__ = (
        Index("ix_changes_kind_project_seq", "kind", "project", "seq"),
        {"sqlite_autoincrement": True},
    )

    # INTEGER PRIMARY KEY on SQLite (its rowid); an identity column on PostgreSQL.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    uid: Mapped[str] = mapped_column(String(36))
    project: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(16))  # ADDED | MODIFIED | DELETED
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    object: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the last state, for DELETED
