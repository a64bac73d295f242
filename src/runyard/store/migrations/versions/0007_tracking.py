"""Experiment tracking: MLflow experiments (and their tags), a tracking row per Run, metric history and
latest values, params, tags and dataset inputs. Runs stored before this get their tracking row here, in
their project's Default experiment.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MS = sa.BigInteger()
TERMINAL = ("Succeeded", "Failed", "Cancelled")


def upgrade() -> None:
    op.create_table(
        "tracking_experiments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("artifact_location", sa.Text(), nullable=True),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("creation_time", MS, nullable=False),
        sa.Column("last_update_time", MS, nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_tracking_experiments_project_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "tracking_experiment_tags",
        sa.Column("experiment_id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "tracking_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False, unique=True),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("run_name", sa.String(250), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("tracking_only", sa.Boolean(), nullable=False),
        sa.Column("start_time", MS, nullable=False),
        sa.Column("end_time", MS, nullable=True),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tracking_runs_experiment_start", "tracking_runs", ["experiment_id", "start_time"])
    op.create_table(
        "tracking_metrics",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", MS, nullable=False),
        sa.Column("timestamp", MS, nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
    )
    op.create_index(
        "ix_tracking_metrics_run_key_step_ts",
        "tracking_metrics",
        ["run_id", "key", "step", "timestamp", "value", "is_nan"],
    )
    op.create_table(
        "tracking_latest_metrics",
        sa.Column("run_id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("step", MS, nullable=False),
        sa.Column("timestamp", MS, nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("points", MS, nullable=False),
    )
    for table in ("tracking_params", "tracking_tags"):
        op.create_table(
            table,
            sa.Column("run_id", sa.Integer(), primary_key=True),
            sa.Column("key", sa.String(250), primary_key=True),
            sa.Column("value", sa.Text(), nullable=False),
        )
    op.create_table(
        "tracking_inputs",
        sa.Column("run_id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("digest", sa.String(36), primary_key=True),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
    )
    _backfill()


def _ms(value) -> int:
    if isinstance(value, str):
        from datetime import datetime

        value = datetime.fromisoformat(value)
    return int(value.timestamp() * 1000)


def _backfill() -> None:
    """A tracking row for every Run already stored, in a Default experiment per project."""
    conn = op.get_bind()
    resources = sa.table(
        "resources",
        sa.column("uid"),
        sa.column("project"),
        sa.column("kind"),
        sa.column("name"),
        sa.column("phase"),
        sa.column("created_at"),
        sa.column("updated_at"),
    )
    runs = conn.execute(sa.select(resources).where(resources.c.kind == "Run")).all()
    experiments = sa.table(
        "tracking_experiments",
        sa.column("id"),
        sa.column("project"),
        sa.column("name"),
        sa.column("artifact_location"),
        sa.column("lifecycle_stage"),
        sa.column("creation_time"),
        sa.column("last_update_time"),
    )
    defaults: dict[str, int] = {}
    rows = []
    for run in runs:
        created = _ms(run.created_at)
        if run.project not in defaults:
            values = {
                "project": run.project,
                "name": "Default",
                "artifact_location": None,
                "lifecycle_stage": "active",
                "creation_time": created,
                "last_update_time": created,
            }
            got = conn.execute(sa.insert(experiments).values(values).returning(experiments.c.id))
            defaults[run.project] = got.scalar_one()
        exp_id = defaults[run.project]
        hex_id = run.uid.replace("-", "")
        rows.append(
            {
                "uid": run.uid,
                "project": run.project,
                "experiment_id": exp_id,
                "run_name": run.name,
                "user_id": "",
                "tracking_only": False,
                "start_time": created,
                "end_time": _ms(run.updated_at) if run.phase in TERMINAL else None,
                "lifecycle_stage": "active",
                "artifact_uri": f"mlflow-artifacts:/{run.project}/{exp_id}/{hex_id}/artifacts",
            }
        )
    if rows:
        tracking_runs = sa.table("tracking_runs", *(sa.column(k) for k in rows[0]))
        conn.execute(sa.insert(tracking_runs), rows)


def downgrade() -> None:
    for table in (
        "tracking_inputs",
        "tracking_tags",
        "tracking_params",
        "tracking_latest_metrics",
        "tracking_metrics",
        "tracking_runs",
        "tracking_experiment_tags",
        "tracking_experiments",
    ):
        op.drop_table(table)
