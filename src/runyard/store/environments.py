"""Environment records: content-addressed builds, their names per project, state and lock. STUB (issue 7)."""

from __future__ import annotations

from runyard.store.base import StoreBase


class EnvironmentStore(StoreBase):
    pass
