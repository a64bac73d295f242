"""Model access keys, stored hashed.

Revision ID: 0013_model_keys
Revises: 0012_model_registry
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0013_model_keys"
down_revision = "0012_model_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
