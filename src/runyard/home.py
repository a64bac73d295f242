"""Where the embedded server keeps its state; cheap to import, as every CLI command needs it."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """RUNYARD_HOME, else ~/.runyard: the database, logs, snapshots and admin token of the embedded server."""
    return Path(os.environ.get("RUNYARD_HOME") or Path.home() / ".runyard").expanduser()
