"""Node capacity held by runs: the nodes (the row a reservation locks), each run's allocation of cpu,
memory and GPUs, and the GPU claims whose primary key lets one run only hold a GPU.

Revision ID: 0010_allocations
Revises: 0009_environments
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_allocations"
down_revision = "0009_environments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("cpu", sa.Float(precision=53), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "allocations",
        sa.Column("run_uid", sa.String(36), primary_key=True),
        sa.Column("node", sa.String(63), nullable=False),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("run_name", sa.String(63), nullable=False),
        sa.Column("cpu", sa.Float(precision=53), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_allocations_node", "allocations", ["node"])
    op.create_table(
        "gpu_claims",
        sa.Column("node", sa.String(63), primary_key=True),
        sa.Column("gpu_index", sa.Integer(), primary_key=True),
        sa.Column("run_uid", sa.String(36), nullable=False),
    )
    op.create_index("ix_gpu_claims_run_uid", "gpu_claims", ["run_uid"])


def downgrade() -> None:
    op.drop_table("gpu_claims")
    op.drop_table("allocations")
    op.drop_table("nodes")
