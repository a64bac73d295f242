"""Content-addressed snapshots: file blobs keyed by SHA-256, and manifests that name them.

Unchanged files are never uploaded twice: registering a manifest answers which blobs are missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from runyard.core.errors import FieldError, Invalid, NotFound
from runyard.store import Store

HEX_LEN = 64


class ManifestEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    mode: int = 0o644


class Manifest(BaseModel):
    files: dict[str, ManifestEntry]


class BlobStore:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put(self, digest: str, chunks) -> None:
        """Store bytes under their digest; refuses bytes whose hash differs. Idempotent."""
        if len(digest) != HEX_LEN or any(c not in "0123456789abcdef" for c in digest):
            raise Invalid("bad blob id", [FieldError("digest", "must be 64 lowercase hex digits")])
        if self.has(digest):
            return
        h = hashlib.sha256()
        target = self.path(digest)
        target.parent.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            for chunk in chunks:
                h.update(chunk)
                tmp.write(chunk)
        if h.hexdigest() != digest:
            os.unlink(tmp.name)
            raise Invalid("upload corrupted", [FieldError("body", f"content hashes to {h.hexdigest()}")])
        os.replace(tmp.name, target)


def _check_paths(files: dict[str, ManifestEntry]) -> None:
    bad = [
        FieldError(f"files.{p}", "must be a relative path inside the project")
        for p in files
        if not p or PurePosixPath(p).is_absolute() or ".." in PurePosixPath(p).parts
    ]
    if bad:
        raise Invalid("the snapshot manifest is invalid", bad)


def register_snapshot(store: Store, blobs: BlobStore, manifest: Manifest) -> dict:
    """Answer the snapshot id and the blobs still missing; the snapshot exists once none are."""
    _check_paths(manifest.files)
    files = {p: e.model_dump() for p, e in sorted(manifest.files.items())}
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    snapshot_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
    missing = sorted({e.sha256 for e in manifest.files.values() if not blobs.has(e.sha256)})
    if not missing:
        store.put_snapshot(snapshot_id, files)
    return {"id": snapshot_id, "missing": missing}


def materialize(store: Store, blobs: BlobStore, snapshot_id: str, dest: Path) -> None:
    """Copy a snapshot's files into dest (a run's private work directory)."""
    files = store.get_snapshot(snapshot_id)
    for rel, entry in files.items():
        src = blobs.path(entry["sha256"])
        if not src.exists():
            raise NotFound(f"snapshot {snapshot_id} refers to a missing blob {entry['sha256']}")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        os.chmod(target, entry.get("mode", 0o644))
