"""Snapshot manifests: {path: {sha256, mode, size}}; file contents live in the blob store.

A snapshot belongs to every project that registered it: a resource may only name its own project's.
A blob belongs to every project that uploaded it: dedupe across projects must not tell one project
what another holds.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from runyard.core.clock import now
from runyard.core.errors import NotFound
from runyard.store.base import StoreBase
from runyard.store.tables import BlobProjectRow, SnapshotProjectRow, SnapshotRow


class SnapshotStore(StoreBase):
    def put_snapshot(self, snapshot_id: str, manifest: dict, project: str) -> None:
        """Keep the manifest (once) and record that `project` registered it. Idempotent."""
        try:
            with self.write() as s:
                if s.get(SnapshotRow, snapshot_id) is None:
                    s.add(SnapshotRow(id=snapshot_id, manifest=manifest, created_at=now()))
                if s.get(SnapshotProjectRow, (snapshot_id, project)) is None:
                    s.add(SnapshotProjectRow(snapshot_id=snapshot_id, project=project, created_at=now()))
        except IntegrityError:  # registered concurrently: what this call meant to write exists
            pass

    def get_snapshot(self, snapshot_id: str) -> dict:
        with self.read() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is None:
                raise NotFound(f"snapshot {snapshot_id} not found")
            return row.manifest

    def snapshot_in_project(self, snapshot_id: str, project: str) -> bool:
        with self.read() as s:
            query = select(SnapshotProjectRow.snapshot_id).where(
                SnapshotProjectRow.snapshot_id == snapshot_id, SnapshotProjectRow.project == project
            )
            return s.scalars(query).first() is not None

    def add_blob_owner(self, digest: str, project: str) -> None:
        self.insert_once(BlobProjectRow, (digest, project), digest=digest, project=project, created_at=now())

    def owned_blobs(self, project: str, digests: set[str]) -> set[str]:
        """Which of `digests` this project uploaded."""
        owned: set[str] = set()
        ordered = sorted(digests)
        with self.read() as s:
            for i in range(0, len(ordered), 500):
                query = select(BlobProjectRow.digest).where(
                    BlobProjectRow.project == project, BlobProjectRow.digest.in_(ordered[i : i + 500])
                )
                owned.update(s.scalars(query))
        return owned
