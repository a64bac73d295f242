"""Environments: content-addressed virtualenv builds (state, Python, platform, sources, lock, packages,
who builds it), the projects that asked for each, and each project's names for them.

Revision ID: 0009_environments
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_environments"
down_revision = "0008"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.String(71), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("python", sa.JSON(), nullable=False),
        sa.Column("platform", sa.String(128), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_files", sa.JSON(), nullable=False),
        sa.Column("lock", sa.Text(), nullable=True),
        sa.Column("lock_digest", sa.String(71), nullable=True),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("built_at", TIME, nullable=True),
        sa.Column("last_used_at", TIME, nullable=True),
        sa.Column("build_seconds", sa.Float(), nullable=True),
        sa.Column("builder", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("heartbeat_at", TIME, nullable=True),
    )
    op.create_table(
        "environment_names",
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("env_id", sa.String(71), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "environment_projects",
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("env_id", sa.String(71), primary_key=True),
        sa.Column("created_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("environment_projects")
    op.drop_table("environment_names")
    op.drop_table("environments")
