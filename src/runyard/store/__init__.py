"""Persistence: SQLAlchemy tables, Alembic migrations and the Store the services use.

The Store is one object made of one part per concern, each in its own module: resources (with
idempotency), the change feed, events, projects, tokens, snapshot manifests and experiment tracking.
"""

from runyard.store.allocations import AllocationStore
from runyard.store.base import EventSpec, R
from runyard.store.environments import EnvironmentStore
from runyard.store.events import EventStore
from runyard.store.jobs import JobStore
from runyard.store.model_keys import ModelKeyStore
from runyard.store.projects import ProjectStore
from runyard.store.registry import RegistryStore
from runyard.store.resources import ResourceStore
from runyard.store.snapshots import SnapshotStore
from runyard.store.tokens import TokenStore
from runyard.store.tracking import RunInit, RunRef, TrackingStore


class Store(
    JobStore,
    ResourceStore,
    TrackingStore,
    EventStore,
    ProjectStore,
    TokenStore,
    SnapshotStore,
    EnvironmentStore,
    AllocationStore,
    RegistryStore,
    ModelKeyStore,
):
    """SQLite or PostgreSQL, chosen by URL; migrated to the newest schema when opened."""


__all__ = ["EventSpec", "R", "RunInit", "RunRef", "Store"]
