"""The client side of snapshots: which files of a project directory make up a run's code, and their hashes.

Honours `.gitignore` files at every level and a `.runyardignore` at the root (gitignore syntax; applied last,
so `!pattern` there can bring back a file that git ignores). Symlinks are never followed out of the tree.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TypedDict

from runyard.core.errors import FieldError, Invalid

if TYPE_CHECKING:
    import pathspec

MAX_FILES = 10_000
MAX_BYTES = 2 * 1024**3
ALWAYS_SKIPPED = frozenset({".git", ".runyard", "__pycache__", ".venv", "venv"})
IGNORE_FILE = ".runyardignore"
_CHUNK = 1024 * 1024

# (absolute path, size, mtime_ns) -> sha256 hex, in memory only: a long-lived client hashes nothing twice.
_hash_cache: dict[tuple[str, int, int], str] = {}


class FileEntry(TypedDict):
    sha256: str
    size: int
    mode: int


class _Rules:
    """The ignore specs in force, each anchored at the directory (posix, relative to root) that holds it."""

    def __init__(self, specs: list[tuple[str, pathspec.PathSpec]]):
        self.specs = specs

    def with_dir(self, rel_dir: str, directory: Path) -> _Rules:
        spec = _read_spec(directory / ".gitignore")
        return self if spec is None else _Rules([*self.specs, (rel_dir, spec)])

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict = False
        for base, spec in self.specs:
            if base and not rel.startswith(base + "/"):
                continue
            local = rel[len(base) + 1 :] if base else rel
            result = spec.check_file(local + "/" if is_dir else local)
            if result.include is not None:
                verdict = result.include
        return verdict


def _read_spec(path: Path) -> pathspec.PathSpec | None:
    if not path.is_file():
        return None
    import pathspec  # here: most directories have no ignore file, and most commands upload nothing

    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def collect(root: Path, left_out: list[str] | None = None) -> dict[str, FileEntry]:
    """Walk `root` and return {posix relative path: FileEntry} for every file that is not ignored; the
    symlinks left out (out of the tree, to a directory, dangling) are added to `left_out`.

    Raises Invalid when the tree holds more than MAX_FILES files or MAX_BYTES bytes.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise Invalid(f"{root.name or root} is not a directory", [FieldError("path", "expected a directory")])
    root_rules = _Rules([]).with_dir("", root)
    extra = _read_spec(root / IGNORE_FILE)
    files: dict[str, FileEntry] = {}
    _walk(root, root, root_rules, extra, files, [0], left_out if left_out is not None else [])
    return dict(sorted(files.items()))


def _walk(
    root: Path,
    directory: Path,
    rules: _Rules,
    extra: pathspec.PathSpec | None,
    files: dict[str, FileEntry],
    total: list[int],
    left_out: list[str],
) -> None:
    final = _Rules([*rules.specs, ("", extra)]) if extra is not None else rules
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = PurePosixPath(Path(entry.path).relative_to(root)).as_posix()
        if entry.is_dir(follow_symlinks=False):
            if entry.name in ALWAYS_SKIPPED or final.ignored(rel, is_dir=True):
                continue
            sub = Path(entry.path)
            _walk(root, sub, rules.with_dir(rel, sub), extra, files, total, left_out)
        elif not final.ignored(rel, is_dir=False):
            _add_file(root, Path(entry.path), rel, files, total, left_out)


def _add_file(
    root: Path, path: Path, rel: str, files: dict[str, FileEntry], total: list[int], left_out: list[str]
) -> None:
    target = _inside_target(root, path)
    if target is None:  # a symlink out of the tree, to a directory, or something that is not a regular file
        if path.is_symlink():
            left_out.append(rel)
        return
    st = target.stat()
    total[0] += st.st_size
    if len(files) + 1 > MAX_FILES or total[0] > MAX_BYTES:
        raise _too_big(len(files) + 1 > MAX_FILES)
    executable = bool(st.st_mode & stat.S_IXUSR)
    files[rel] = FileEntry(sha256=_hash(target, st), size=st.st_size, mode=0o755 if executable else 0o644)


def _inside_target(root: Path, path: Path) -> Path | None:
    """The regular file `path` stands for, or None if it is not one (or is a symlink leaving `root`)."""
    if not path.is_symlink():
        return path if path.is_file() else None
    target = path.resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def _hash(path: Path, st: os.stat_result) -> str:
    key = (str(path), st.st_size, st.st_mtime_ns)
    cached = _hash_cache.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        cached = _hash_cache[key] = digest.hexdigest()
    return cached


def _too_big(too_many_files: bool) -> Invalid:
    reason = f"more than {MAX_FILES:,} files" if too_many_files else f"more than {MAX_BYTES // 1024**3} GiB"
    return Invalid(
        f"the project directory is too large to snapshot ({reason}); add a {IGNORE_FILE} "
        "(gitignore syntax) listing data, checkpoints and other files the run does not need",
        [FieldError("path", reason)],
    )
