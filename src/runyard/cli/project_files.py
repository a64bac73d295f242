"""The project directory uploaded for `run` and `apply`, saying first what is left out and what is large;
the progress bar of long transfers (uploads, artifact downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runyard.cli.errors import note, warn

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from runyard.rest import Rest

_SHOWN = 5  # large files named, the largest first


def upload(rest: Rest, root: Path) -> str:
    """Snapshot `root` (notes on stderr: each symlink left out; a warning with the total size when it holds
    large files, naming them), with a progress bar for long uploads; returns the snapshot id."""
    from runyard.upload import LARGE_FILE, scan, upload_snapshot

    found = scan(root)
    for link in found.links_left_out:
        note(
            f"note: symlink {link} left out of the snapshot (it leads out of the directory, or not to a file)"
        )
    if found.large:
        names = ", ".join(f"{rel} ({size_text(size)})" for rel, size in found.large[:_SHOWN])
        more = f" and {len(found.large) - _SHOWN} more" if len(found.large) > _SHOWN else ""
        warn(
            f"the snapshot holds {size_text(found.total)} in {len(found.files)} files, {len(found.large)} of "
            f"them over {size_text(LARGE_FILE)}: {names}{more}; list data and checkpoints in .runyardignore "
            "to leave them out"
        )
    with TransferProgress("Uploading files") as progress:
        return upload_snapshot(rest, root, found, progress)


def size_text(size: float) -> str:
    """1.5 GiB, 80 MiB, 512 B."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class TransferProgress:
    """A progress bar on stderr for uploads and downloads over 1 MiB on a terminal; silent otherwise."""

    THRESHOLD = 1024 * 1024

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, done: int, total: int) -> None:
        import sys

        if self._bar is None and total > self.THRESHOLD and sys.stderr.isatty():
            self._start(total)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
        self._bar = Progress(*columns, console=Console(stderr=True), transient=True)
        self._task = self._bar.add_task(self.label, total=total)
        self._bar.start()
