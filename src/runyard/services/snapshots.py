"""Content-addressed snapshots: file blobs keyed by SHA-256, and manifests that name them.

Unchanged files are never uploaded twice: registering a manifest answers which blobs are missing.
A manifest is checked whole at registration (paths, modes, sizes), so nothing fails later at launch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import IO

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, field_validator

from runyard.core.errors import FieldError, Invalid, NotFound
from runyard.store import Store

HEX_LEN = 64
MAX_FILES = 100_000
MAX_PATH_BYTES = 4096  # PATH_MAX
MAX_NAME_BYTES = 255  # NAME_MAX
WRITE_BATCH = 1 << 20  # bytes of an upload gathered before a write (off the event loop)


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, le=1 << 62)
    mode: int = Field(0o644, description="permission bits only, 0 to 0o777")

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: int) -> int:
        if not 0 <= v <= 0o777:
            raise ValueError(
                f"{v} (0o{v:o}) is not a permission mode: only the bits 0o777 are allowed "
                "(no setuid, setgid or sticky bit, no file type)"
            )
        return v


class Manifest(BaseModel):
    files: dict[str, ManifestEntry] = Field(max_length=MAX_FILES)


class BlobStore:
    def __init__(self, root: Path, max_bytes: int = 2 << 30):
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int | None:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def receive(self, digest: str, chunks: AsyncIterator[bytes]) -> None:
        """Stream bytes to disk under their digest, hashing as they arrive: memory stays flat whatever the
        size. Refuses bytes whose hash differs. Idempotent. File work runs in a thread, not on the loop."""
        target = self.path(digest)
        tmp = await anyio.to_thread.run_sync(self._open_temp, target.parent)
        h = hashlib.sha256()
        try:
            batch: list[bytes] = []
            pending = 0
            async for chunk in chunks:
                batch.append(chunk)
                pending += len(chunk)
                if pending >= WRITE_BATCH:
                    await anyio.to_thread.run_sync(_write, tmp, h, batch)
                    batch, pending = [], 0
            await anyio.to_thread.run_sync(_write, tmp, h, batch)
            await anyio.to_thread.run_sync(tmp.close)
            if h.hexdigest() != digest:
                raise Invalid("upload corrupted", [FieldError("body", f"content hashes to {h.hexdigest()}")])
            await anyio.to_thread.run_sync(os.replace, tmp.name, target)
        except BaseException:
            tmp.close()
            await anyio.to_thread.run_sync(_unlink, tmp.name)
            raise

    @staticmethod
    def _open_temp(folder: Path) -> IO[bytes]:
        folder.mkdir(exist_ok=True)
        return tempfile.NamedTemporaryFile(dir=folder, delete=False, prefix=".upload-")  # noqa: SIM115


def _write(f: IO[bytes], h, batch: list[bytes]) -> None:
    for chunk in batch:
        h.update(chunk)
        f.write(chunk)


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


def _path_problem(p: str) -> str | None:
    """Why a manifest path cannot be a file in a run's work directory, or None."""
    if "\0" in p:
        return "must not contain a NUL byte"
    if not p or p == ".":
        return "must not be empty"
    if len(p.encode()) > MAX_PATH_BYTES:
        return f"must be at most {MAX_PATH_BYTES} bytes"
    pure = PurePosixPath(p)
    if pure.is_absolute() or ".." in pure.parts:
        return "must be a relative path inside the project"
    if str(pure) != p:
        return "must be normalized: no empty or '.' components, no trailing '/'"
    if any(len(part.encode()) > MAX_NAME_BYTES for part in pure.parts):
        return f"each path component must be at most {MAX_NAME_BYTES} bytes"
    return None


def _check_digest(digest: str) -> None:
    if len(digest) != HEX_LEN or any(c not in "0123456789abcdef" for c in digest):
        raise Invalid("bad blob id", [FieldError("digest", "must be 64 lowercase hex digits")])


async def upload_blob(
    store: Store, blobs: BlobStore, project: str, digest: str, chunks: AsyncIterator[bytes]
) -> None:
    """Keep a blob for `project`. A blob stored already for another project is received and hashed all
    the same: sending the bytes is the proof that the project has them."""
    _check_digest(digest)
    if await anyio.to_thread.run_sync(_present, store, blobs, project, {digest}):
        return
    await blobs.receive(digest, chunks)
    await anyio.to_thread.run_sync(store.add_blob_owner, digest, project)


def _present(store: Store, blobs: BlobStore, project: str, digests: set[str]) -> set[str]:
    """The blobs this project uploaded that are still on disk."""
    return {d for d in store.owned_blobs(project, digests) if blobs.has(d)}


def _check(files: dict[str, ManifestEntry], blobs: BlobStore, present: set[str]) -> None:
    bad = [FieldError(f"files.{p}", why) for p in files if (why := _path_problem(p))]
    folders = {str(parent) for p in files for parent in PurePosixPath(p).parents}
    bad += [
        FieldError(f"files.{p}", "is a file, but other files are inside it") for p in files if p in folders
    ]
    for p, e in files.items():
        if e.size > blobs.max_bytes:
            bad.append(FieldError(f"files.{p}.size", f"exceeds the blob limit of {blobs.max_bytes} bytes"))
        stored = blobs.size(e.sha256) if e.sha256 in present else None  # not another project's sizes
        if stored is not None and stored != e.size:
            bad.append(FieldError(f"files.{p}.size", f"is {e.size}, but its content is {stored} bytes"))
    if bad:
        raise Invalid("the snapshot manifest is invalid", bad)


def register_snapshot(store: Store, blobs: BlobStore, project: str, manifest: Manifest) -> dict:
    """Answer the snapshot id and the blobs still missing; the snapshot exists (for `project`) once none
    are."""
    present = _present(store, blobs, project, {e.sha256 for e in manifest.files.values()})
    _check(manifest.files, blobs, present)
    files = {p: e.model_dump() for p, e in sorted(manifest.files.items())}
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    snapshot_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
    missing = sorted({e.sha256 for e in manifest.files.values()} - present)
    if not missing:
        store.put_snapshot(snapshot_id, files, project)
    return {"id": snapshot_id, "missing": missing}


def check_snapshot_owner(store: Store, project: str, snapshot: str | None, field: str) -> None:
    """A resource may only name a snapshot registered in its own project."""
    if snapshot is not None and not store.snapshot_in_project(snapshot, project):
        raise Invalid(
            "unknown snapshot",
            [FieldError(field, f"no snapshot {snapshot} was registered in project {project!r}")],
        )


def project_snapshot(store: Store, project: str, snapshot_id: str) -> dict:
    """The manifest of a snapshot of `project`; NotFound for another project's, as for none."""
    if not store.snapshot_in_project(snapshot_id, project):
        raise NotFound(f"no snapshot {snapshot_id} in project {project!r}")
    return store.get_snapshot(snapshot_id)


def project_blob(store: Store, blobs: BlobStore, project: str, digest: str) -> Path:
    """Where the bytes of a blob `project` uploaded are; NotFound for another project's, as for none."""
    _check_digest(digest)
    if not _present(store, blobs, project, {digest}):
        raise NotFound(f"no blob {digest} in project {project!r}")
    return blobs.path(digest)


def snapshot_files(store: Store, blobs: BlobStore, snapshot_id: str) -> list[tuple[str, str, int]]:
    """A snapshot's files as (blob path, path in the work directory, mode): what a runtime copies into a
    run's private work directory, in the run's own supervisor rather than on the controller's thread."""
    files = []
    for rel, entry in store.get_snapshot(snapshot_id).items():
        src = blobs.path(entry["sha256"])
        if not src.exists():
            raise NotFound(f"snapshot {snapshot_id} refers to a missing blob {entry['sha256']}")
        files.append((str(src), rel, entry.get("mode", 0o644) & 0o777))
    return files
