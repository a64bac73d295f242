"""Model access keys, stored hashed.

Revision ID: 0013_model_keys
Revises: 0012_model_registry
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_model_keys"
down_revision = "0012_model_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "model_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("model_uid", sa.String(36), nullable=False),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("model_name", sa.String(63), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("last_used_at", ts, nullable=True),
    )
    op.create_index("ix_model_keys_model_uid", "model_keys", ["model_uid"])


def downgrade() -> None:
    op.drop_table("model_keys")
