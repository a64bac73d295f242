"""The change feed behind list + watch.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object", sa.JSON(), nullable=True),
        sqlite_autoincrement=True,  # numbers are never reused, even after pruning the newest
    )
    op.create_index("ix_changes_kind_project_seq", "changes", ["kind", "project", "seq"])


def downgrade() -> None:
    op.drop_table("changes")
