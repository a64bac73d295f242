"""Blob ownership: which projects uploaded a blob, so another project cannot learn that it exists (or
name it in a snapshot) without sending its bytes. Blobs already stored count as missing for every
project until it uploads them once more.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_projects",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blob_projects")
