"""Initial schema: resources, events, projects, tokens, idempotency keys, snapshots.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=True),
        sa.Column("owner_uid", sa.String(36), nullable=True),
        sa.Column("owner_kind", sa.String(32), nullable=True),
        sa.Column("owner_name", sa.String(63), nullable=True),
        sa.Column("resource_version", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("deletion_timestamp", TZ, nullable=True),
        sa.UniqueConstraint("project", "kind", "name", name="uq_resources_project_kind_name"),
    )
    op.create_index("ix_resources_kind_phase", "resources", ["kind", "phase"])
    op.create_index("ix_resources_owner_uid", "resources", ["owner_uid"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("time", TZ, nullable=False),
    )
    op.create_index("ix_events_uid", "events", ["uid"])
    op.create_table(
        "projects",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("project", sa.String(63), nullable=True),
        sa.Column("run_uid", sa.String(36), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(71), primary_key=True),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("snapshots", "idempotency_keys", "tokens", "projects", "events", "resources"):
        op.drop_table(table)
