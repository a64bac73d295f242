"""Persistence: SQLAlchemy tables, Alembic migrations and the Store the services use."""

from runyard.store.repository import Store

__all__ = ["Store"]
