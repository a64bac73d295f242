"""An index in the order lists page through a kind in a project, so a page reads its rows in order
instead of sorting the whole project's on every request.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = ["kind", "project", "created_at", "uid"]
    op.create_index("ix_resources_kind_project_created", "resources", columns)


def downgrade() -> None:
    op.drop_index("ix_resources_kind_project_created", "resources")
