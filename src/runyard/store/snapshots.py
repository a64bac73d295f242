"""Snapshot manifests: {path: {sha256, mode, size}}; file contents live in the blob store."""

from __future__ import annotations

from runyard.core.clock import now
from runyard.core.errors import NotFound
from runyard.store.base import StoreBase
from runyard.store.tables import SnapshotRow


class SnapshotStore(StoreBase):
    def put_snapshot(self, snapshot_id: str, manifest: dict) -> None:
        with self.write() as s:
            if s.get(SnapshotRow, snapshot_id) is None:
                s.add(SnapshotRow(id=snapshot_id, manifest=manifest, created_at=now()))

    def get_snapshot(self, snapshot_id: str) -> dict:
        with self.read() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is None:
                raise NotFound(f"snapshot {snapshot_id} not found")
            return row.manifest
