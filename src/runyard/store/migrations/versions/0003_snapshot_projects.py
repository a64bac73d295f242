"""Snapshot ownership: which projects registered a snapshot, so a resource may only name its own.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshot_projects",
        sa.Column("snapshot_id", sa.String(71), primary_key=True),
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("snapshot_projects")
