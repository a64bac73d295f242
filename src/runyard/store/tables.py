"""The ORM tables. Alembic migrations under migrations/ must agree with these (a test checks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
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


# Experiment tracking (MLflow's model). Times are epoch milliseconds as MLflow sends them. Rows of a run
# point at tracking_runs.id, a small integer, rather than at the 36-character uid: the metric tables are
# the ones that grow to millions of rows, and their one index is then a third of the size.


class TrackingExperimentRow(Base):
    """An MLflow experiment: a named group of runs inside one project."""

    __tablename__ = "tracking_experiments"
    __table_args__ = (
        UniqueConstraint("project", "name", name="uq_tracking_experiments_project_name"),
        {"sqlite_autoincrement": True},  # ids are never reused: MLflow clients keep them
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(500))
    artifact_location: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: the default
    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    creation_time: Mapped[int] = mapped_column(BigInteger)
    last_update_time: Mapped[int] = mapped_column(BigInteger)


class TrackingExperimentTagRow(Base):
    __tablename__ = "tracking_experiment_tags"

    experiment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingRunRow(Base):
    """The tracking side of a Run resource (one row each, written and removed with it). Its MLflow status
    is not stored: it is the Run's phase, read from the resources table."""

    __tablename__ = "tracking_runs"
    __table_args__ = (
        Index("ix_tracking_runs_experiment_start", "experiment_id", "start_time"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    project: Mapped[str] = mapped_column(String(63))
    experiment_id: Mapped[int] = mapped_column(Integer)
    run_name: Mapped[str] = mapped_column(String(250))
    user_id: Mapped[str] = mapped_column(String(256))
    tracking_only: Mapped[bool] = mapped_column(Boolean)
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    artifact_uri: Mapped[str] = mapped_column(Text)


# Every point logged, in a table without a primary key: one index, the order history reads walk.
TRACKING_METRICS = Table(
    "tracking_metrics",
    Base.metadata,
    Column("run_id", Integer, nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float(precision=53), nullable=False),  # 0 when is_nan: SQLite keeps NaN as NULL
    Column("is_nan", Boolean, nullable=False),
    # covering: a history is read from the index alone, in its order (about twice as fast as visiting
    # the table for each row, for the same cost of writing)
    Index("ix_tracking_metrics_run_key_step_ts", "run_id", "key", "step", "timestamp", "value", "is_nan"),
)


class TrackingLatestMetricRow(Base):
    """Each metric's latest point (largest step, then timestamp, then value, as MLflow picks it), and
    how many points it has: a history read elsewhere can tell whether it is still complete."""

    __tablename__ = "tracking_latest_metrics"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float(precision=53))
    is_nan: Mapped[bool] = mapped_column(Boolean)
    points: Mapped[int] = mapped_column(BigInteger)


class TrackingParamRow(Base):
    __tablename__ = "tracking_params"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingTagRow(Base):
    __tablename__ = "tracking_tags"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingInputRow(Base):
    """A dataset a run used (MLflow's DatasetInput): the dataset as sent, and the input's tags."""

    __tablename__ = "tracking_inputs"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    digest: Mapped[str] = mapped_column(String(36), primary_key=True)
    dataset: Mapped[dict] = mapped_column(JSON)
    tags: Mapped[list] = mapped_column(JSON)


class LoggedModelRow(Base):
    """An MLflow 3 logged model: a model's files (under artifact_location) and what describes it. A model
    has few params and tags, read and written whole with it: JSON, not rows of their own."""

    __tablename__ = "logged_models"
    __table_args__ = (Index("ix_logged_models_experiment_created", "experiment_id", "creation_timestamp_ms"),)

    model_id: Mapped[str] = mapped_column(String(34), primary_key=True)  # "m-" + 32 hex, as MLflow's
    project: Mapped[str] = mapped_column(String(63))
    experiment_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(500))
    artifact_location: Mapped[str] = mapped_column(Text)
    creation_timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    last_updated_timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_type: Mapped[str | None] = mapped_column(String(500), nullable=True)
    source_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict] = mapped_column(JSON)
    tags: Mapped[dict] = mapped_column(JSON)


class LoggedModelOutputRow(Base):
    """A model a run produced (MLflow's run outputs), at the step it was logged."""

    __tablename__ = "logged_model_outputs"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(34), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)


class LoggedModelMetricRow(Base):
    """A model's latest value of a metric (on a dataset, '' for none): metrics logged with its model_id."""

    __tablename__ = "logged_model_metrics"

    model_id: Mapped[str] = mapped_column(String(34), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    dataset_name: Mapped[str] = mapped_column(String(500), primary_key=True)
    dataset_digest: Mapped[str] = mapped_column(String(36), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)  # None: NaN
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str] = mapped_column(String(32))


class JobStateRow(Base):
    """One per Job: the row a fire locks, so a job's fires are claimed one at a time (the claim, its
    concurrency check and its run are one transaction), and what the next fire must not repeat."""

    __tablename__ = "job_states"

    job_uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project: Mapped[str] = mapped_column(String(63))
    job_name: Mapped[str] = mapped_column(String(63))
    next_seq: Mapped[int] = mapped_column(Integer, default=1)  # the number in the next run's name
    # The latest scheduled instant claimed: a fire at or before it is a duplicate (a second controller,
    # a restart), even after older fire records are pruned.
    last_schedule_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_dependency_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dependency_key: Mapped[str | None] = mapped_column(Text, nullable=True)  # the upstream runs it ran after
    webhook_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobFireRow(Base):
    """Each trigger of a job and what came of it: a run, or why none (skipped, missed)."""

    __tablename__ = "job_fires"
    __table_args__ = (
        UniqueConstraint("job_uid", "fire_key", name="uq_job_fires_job_key"),
        Index("ix_job_fires_fired_at", "fired_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_uid: Mapped[str] = mapped_column(String(36))
    fire_key: Mapped[str] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual | dependency
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(16))  # Created | Skipped | Missed
    run_uid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    run_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class JobNotificationRow(Base):
    """The outbox of job notifications: written in the transaction that ends the run, so a crash never
    loses one; delivered (and retried) by services/job_notifications.py."""

    __tablename__ = "job_notifications"
    __table_args__ = (
        UniqueConstraint("run_uid", "channel", name="uq_job_notifications_run_channel"),
        Index("ix_job_notifications_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_uid: Mapped[str] = mapped_column(String(36))
    project: Mapped[str] = mapped_column(String(63))
    job_name: Mapped[str] = mapped_column(String(63))
    run_uid: Mapped[str] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    event: Mapped[str] = mapped_column(String(32))  # run.succeeded | run.failed
    payload: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
