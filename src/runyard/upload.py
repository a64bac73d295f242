"""Uploading a project directory as a snapshot: only the files the server lacks, each streamed from disk."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runyard.core.errors import FieldError, Invalid, Unavailable
from runyard.rest import Progress, Rest
from runyard.workspace import FileEntry, collect

LARGE_FILE = 50 * 1024**2  # a file this size in a snapshot is most likely data or a checkpoint


@dataclass
class Scan:
    """The files of a directory that make up a snapshot, and what a user may want to hear about them."""

    root: Path
    files: dict[str, FileEntry]
    links_left_out: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(entry["size"] for entry in self.files.values())

    @property
    def large(self) -> list[tuple[str, int]]:
        """(path, size) of the files of LARGE_FILE bytes or more, largest first."""
        big = [(rel, entry["size"]) for rel, entry in self.files.items() if entry["size"] >= LARGE_FILE]
        return sorted(big, key=lambda item: -item[1])


def scan(root: Path) -> Scan:
    left_out: list[str] = []
    files = collect(root, left_out)
    return Scan(Path(root), files, left_out)


def upload_snapshot(
    rest: Rest, root: Path, found: Scan | None = None, progress: Progress | None = None
) -> str:
    """Upload the files of `root` (as `found` lists them) the server lacks; returns the snapshot id."""
    found = found or scan(root)
    files = found.files
    url = f"{rest.base}/projects/{rest.project}/snapshots"
    first = rest.send("POST", url, body={"files": files}).json()
    missing = first["missing"]
    if not missing:  # the server had every file, so the snapshot is registered already
        return first["id"]
    by_hash = {entry["sha256"]: rel for rel, entry in files.items()}
    uploads = [(by_hash[digest], files[by_hash[digest]]) for digest in missing]
    meter = _Meter(sum(entry["size"] for _, entry in uploads), progress)
    for rel, entry in uploads:
        _put_blob(rest, found.root, rel, entry, meter)
    answer = rest.send("POST", url, body={"files": files}).json()
    if answer["missing"]:
        lacking = len(answer["missing"])
        raise Unavailable(f"the server still lacks {lacking} file(s) after the upload; try again")
    return answer["id"]


def _put_blob(rest: Rest, root: Path, rel: str, entry: FileEntry, meter: _Meter) -> None:
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(entry["size"])}
    content = _read_exactly(root / rel, entry["size"], meter)
    try:
        url = f"{rest.base}/projects/{rest.project}/blobs/{entry['sha256']}"
        rest.send("PUT", url, content=content, headers=headers)
    except (Invalid, _FileChanged):
        # The server checks the hash; a file written to while we read it (a log, a database) fails it.
        reason = "changed while it was being uploaded: run again, or list it in .runyardignore"
        raise Invalid("a file changed during the snapshot upload", [FieldError(rel, reason)]) from None


class _FileChanged(Exception):
    """The file holds fewer bytes than when it was hashed."""


class _Meter:
    """Counts uploaded bytes for the caller's progress callback."""

    def __init__(self, total: int, progress: Progress | None):
        self.total, self.done, self.progress = total, 0, progress
        self.add(0)

    def add(self, count: int) -> None:
        self.done += count
        if self.progress:
            self.progress(self.done, self.total)


def _read_exactly(path: Path, size: int, meter: _Meter) -> Iterator[bytes]:
    """The first `size` bytes of the file in chunks: the Content-Length sent must hold even if it grew."""
    left = size
    with path.open("rb") as f:
        while left:
            chunk = f.read(min(left, 1024 * 1024))
            if not chunk:
                raise _FileChanged(path)
            left -= len(chunk)
            yield chunk
            meter.add(len(chunk))
