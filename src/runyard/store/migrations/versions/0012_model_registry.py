"""The model registry (MLflow-compatible): registered models, versions, aliases, tags.

Revision ID: 0012_model_registry
Revises: 0011_jobs
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0012_model_registry"
down_revision = "0011_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
