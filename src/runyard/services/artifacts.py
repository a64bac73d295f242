"""Run artifacts under an artifact root: a local directory or any fsspec URL (memory://, s3://, ...).

Files are kept per project, `{root}/{project}/{path}`; the project is the tenancy boundary, so every path
is checked to stay inside it. Uploads stream to a temporary name outside every project and are renamed
into place once whole, so a reader never sees half a file and a refused upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import unquote

import anyio.to_thread
import fsspec
from fsspec.implementations.local import LocalFileSystem

from runyard.core.errors import FieldError, Invalid, NotFound, TooLarge, Unavailable
from runyard.core.kinds import name_problem

SCHEME = "mlflow-artifacts:"
CHUNK = 1 << 20  # bytes read per step of a download, gathered per write of an upload
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
STALE_UPLOAD_SECONDS = 24 * 3600
UPLOADS = ".uploads"  # a project name never starts with '.': no project can name this folder


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # relative to the listed folder
    is_dir: bool
    file_size: int | None  # None for a folder

    def to_dict(self) -> dict:
        out: dict = {"path": self.path, "is_dir": self.is_dir}
        if self.file_size is not None:
            out["file_size"] = self.file_size
        return out


def clean_path(path: str, field: str = "path") -> str:
    """`path` as a normalized relative path ('' for the top), or Invalid naming `field`: no '..', not
    absolute, no backslash, NUL or '#', within PATH_MAX and NAME_MAX. MLflow's client checks each path it
    lists the same way once percent-decoded, so a name it would refuse is refused here at upload."""
    decoded = _unquoted(path)
    problem = None
    if any(c in decoded for c in "\0\\#"):
        problem = "must not contain a NUL byte, a backslash or '#'"
    elif decoded.startswith("/"):
        problem = "must be a relative path, not an absolute one"
    elif len(path.encode()) > MAX_PATH_BYTES:
        problem = f"must be at most {MAX_PATH_BYTES} bytes"
    elif ".." in decoded.split("/"):
        problem = "must not contain '..': artifact paths stay inside their project"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if problem is None and any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        problem = f"each path component must be at most {MAX_NAME_BYTES} bytes"
    if problem:
        raise Invalid(f"invalid artifact path {path[:200]!r}", [FieldError(field, problem)])
    return "/".join(parts)


def _unquoted(path: str) -> str:
    """Percent-decoded until nothing changes, as MLflow's client decodes a path before it checks it."""
    for _ in range(10):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path


def split_project(path: str, field: str = "path") -> tuple[str, str]:
    """'proj/a/b' -> ('proj', 'a/b'): the first segment of an mlflow-artifacts path names the project."""
    project, _, rest = clean_path(path, field).partition("/")
    problem = name_problem(project) if project else "must start with a project name"
    if problem:
        raise Invalid(f"invalid artifact path {path[:200]!r}", [FieldError(field, f"project: {problem}")])
    return project, rest


def locate(artifact_uri: str) -> tuple[str, str] | None:
    """(project, path) of an artifact URI kept in this store (`mlflow-artifacts:/{project}/{path}`), or
    None for a location elsewhere (an experiment created with its own artifact_location)."""
    if not artifact_uri.startswith(SCHEME):
        return None
    rest = artifact_uri.removeprefix(SCHEME).lstrip("/")
    return split_project(rest, "artifact_uri")


class ArtifactStore:
    """Files per project under `root` (a directory or an fsspec URL); one upload at most `max_bytes`."""

    def __init__(self, root: str, max_bytes: int):
        """Unavailable, in one line naming `root`, when it cannot be used (an unknown protocol, its
        fsspec driver not installed, a directory that cannot be made)."""
        self.root = root
        self.max_bytes = max_bytes
        try:
            self.fs, base = fsspec.core.url_to_fs(root)
            self.base = base.rstrip("/")
            if isinstance(self.fs, LocalFileSystem):
                self.fs.makedirs(self.base, exist_ok=True)
                self._sweep(f"{self.base}/{UPLOADS}")
        except (ValueError, ImportError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0]
            raise Unavailable(
                f"cannot use {root} as the artifact root: {reason}; choose another with --artifact-root"
            ) from None

    @staticmethod
    def _sweep(uploads: str) -> None:
        """Remove what uploads cut short by a crash left behind: temporary files a day old. Newer ones may
        belong to another server sharing this root, still receiving them."""
        if not os.path.isdir(uploads):
            return
        with os.scandir(uploads) as entries:
            for entry in entries:
                if entry.is_file() and entry.stat().st_mtime < time.time() - STALE_UPLOAD_SECONDS:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def _full(self, project: str, path: str) -> str:
        problem = name_problem(project)
        if problem:
            raise Invalid("invalid project", [FieldError("project", problem)])
        path = clean_path(path)
        return f"{self.base}/{project}/{path}" if path else f"{self.base}/{project}"

    async def save(self, project: str, path: str, chunks: AsyncIterator[bytes]) -> int:
        """Stream `chunks` into the file `path` of `project`, replacing it; its size. Memory stays flat
        whatever the size; file work runs in a thread. TooLarge over `max_bytes`, leaving nothing."""
        target = self._full(project, path)
        if not clean_path(path):
            raise Invalid("an upload needs a file path", [FieldError("path", "must name a file")])
        tmp = f"{self.base}/{UPLOADS}/{uuid.uuid4().hex}"
        f = await anyio.to_thread.run_sync(self._open_temp, tmp)
        size = 0
        try:
            batch: list[bytes] = []
            pending = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise TooLarge(
                        f"artifact {path!r} is over the limit of {self.max_bytes} bytes "
                        "(the server's max_artifact_bytes)"
                    )
                batch.append(chunk)
                pending += len(chunk)
                if pending >= CHUNK:
                    await anyio.to_thread.run_sync(_write, f, batch)
                    batch, pending = [], 0
            await anyio.to_thread.run_sync(_write, f, batch)
            await anyio.to_thread.run_sync(f.close)
            await anyio.to_thread.run_sync(self._place, tmp, target, path)
        except BaseException:
            await anyio.to_thread.run_sync(self._discard, f, tmp)
            raise
        return size

    def _open_temp(self, tmp: str) -> IO[bytes]:
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        return self.fs.open(tmp, "wb")

    def _place(self, tmp: str, target: str, path: str) -> None:
        if self.fs.isdir(target):
            raise Invalid("cannot replace a folder", [FieldError("path", f"{path!r} is a folder")])
        reason = f"a parent of {path!r} is a file"
        if not isinstance(self.fs, LocalFileSystem):  # object stores let a file and a folder share a name
            parent = posixpath.dirname(target)
            while len(parent) > len(self.base):
                if self.fs.isfile(parent):
                    raise Invalid("cannot store the file", [FieldError("path", reason)])
                parent = posixpath.dirname(parent)
        try:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            self.fs.mv(tmp, target)
        except (FileExistsError, NotADirectoryError) as e:
            raise Invalid("cannot store the file", [FieldError("path", reason)]) from e

    def _discard(self, f: IO[bytes], tmp: str) -> None:
        f.close()
        if self.fs.exists(tmp):
            self.fs.rm_file(tmp)

    def size(self, project: str, path: str) -> int:
        """The size of a stored file; NotFound when there is none (or it is a folder)."""
        full = self._full(project, path)
        try:
            info = self.fs.info(full)
        except FileNotFoundError:
            info = None
        if info is None or info["type"] != "file":
            raise NotFound(f"no artifact {clean_path(path)!r} in project {project!r}")
        return int(info["size"])

    def read(self, project: str, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks of CHUNK (a generator: opened on first use, closed when done)."""
        full = self._full(project, path)
        with self.fs.open(full, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def list(self, project: str, path: str = "") -> list[ArtifactFile]:
        """The folder's entries, by name; [] for a file or for nothing there (as MLflow answers)."""
        full = self._full(project, path)
        try:
            if not self.fs.isdir(full):
                return []
            entries = self.fs.ls(full, detail=True)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            name = posixpath.basename(e["name"].rstrip("/"))
            is_dir = e["type"] == "directory"
            out.append(ArtifactFile(name, is_dir, None if is_dir else int(e.get("size") or 0)))
        return sorted(out, key=lambda a: a.path)

    def remove(self, project: str, path: str = "") -> None:
        """Delete a file or a folder and all under it (a deleted run's artifacts); nothing there is fine."""
        full = self._full(project, path)
        try:
            if self.fs.isdir(full):
                self.fs.rm(full, recursive=True)
            elif self.fs.exists(full):
                self.fs.rm_file(full)
        except FileNotFoundError:
            pass

    def remove_uri(self, artifact_uri: str, project: str) -> None:
        """Delete what `artifact_uri` names when it is kept here in `project` (a run's or a model's
        artifacts). An experiment's artifact_location may name another project's folder: never touched."""
        where = locate(artifact_uri)
        if where is not None and where[0] == project:
            self.remove(*where)


def _write(f: IO[bytes], batch: list[bytes]) -> None:
    for chunk in batch:
        f.write(chunk)
