"""What runs hold of the node (cpu, memory, GPU claims), written atomically. STUB (issue 7)."""

from __future__ import annotations

from runyard.store.base import StoreBase


class AllocationStore(StoreBase):
    pass
