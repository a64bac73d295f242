"""MLflow 3 logged models (their params and tags as JSON), the runs that output them and the latest value
of each metric logged for a model.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "logged_models",
        sa.Column("model_id", sa.String(34), primary_key=True),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("artifact_location", sa.Text(), nullable=False),
        sa.Column("creation_timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("model_type", sa.String(500), nullable=True),
        sa.Column("source_run_id", sa.String(32), nullable=True),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_logged_models_experiment_created", "logged_models", ["experiment_id", "creation_timestamp_ms"]
    )
    op.create_table(
        "logged_model_outputs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("model_id", sa.String(34), primary_key=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
    )

    op.create_table(
        "logged_model_metrics",
        sa.Column("model_id", sa.String(34), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("dataset_name", sa.String(500), primary_key=True),
        sa.Column("dataset_digest", sa.String(36), primary_key=True),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("logged_model_metrics")
    op.drop_table("logged_model_outputs")
    op.drop_index("ix_logged_models_experiment_created", "logged_models")
    op.drop_table("logged_models")
