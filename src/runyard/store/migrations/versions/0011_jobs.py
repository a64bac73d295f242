"""Jobs: per-job state (the row a fire locks), the record of fires, and the notification outbox.

Revision ID: 0011_jobs
Revises: 0010_allocations
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_jobs"
down_revision = "0010_allocations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "job_states",
        sa.Column("job_uid", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("job_name", sa.String(63), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("last_schedule_at", ts, nullable=True),
        sa.Column("last_dependency_at", ts, nullable=True),
        sa.Column("dependency_key", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.String(64), nullable=False),
        sa.Column("created_at", ts, nullable=False),
    )
    op.create_table(
        "job_fires",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_uid", sa.String(36), nullable=False),
        sa.Column("fire_key", sa.String(255), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("scheduled_at", ts, nullable=True),
        sa.Column("fired_at", ts, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("run_uid", sa.String(36), nullable=True),
        sa.Column("run_name", sa.String(63), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.UniqueConstraint("job_uid", "fire_key", name="uq_job_fires_job_key"),
    )
    op.create_index("ix_job_fires_fired_at", "job_fires", ["fired_at"])
    op.create_table(
        "job_notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_uid", sa.String(36), nullable=False),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("job_name", sa.String(63), nullable=False),
        sa.Column("run_uid", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", ts, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("sent_at", ts, nullable=True),
        sa.UniqueConstraint("run_uid", "channel", name="uq_job_notifications_run_channel"),
    )
    op.create_index("ix_job_notifications_due", "job_notifications", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("job_notifications")
    op.drop_table("job_fires")
    op.drop_table("job_states")
