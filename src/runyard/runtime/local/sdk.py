"""`import runyard` in every run, whatever its Python environment: a directory that holds only the runyard
package (a link to the installed one) leads each run's PYTHONPATH. What a run imports of it for tracking
is standard library only, so it cannot clash with the project's own pins."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2]  # the installed runyard package


def sdk_dir(home: Path) -> Path:
    """`home/sdk`, holding `runyard` -> the installed package; made (or pointed again, after an upgrade
    moved the package) once per runtime, atomically, so that a run starting meanwhile finds one or the
    other. Where links are not possible, a copy."""
    root = home / "sdk"
    link = root / "runyard"
    if link.is_symlink() and link.resolve() == PACKAGE:
        return root
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".runyard-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(PACKAGE, target_is_directory=True)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(PACKAGE, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    if link.is_dir() and not link.is_symlink():  # an earlier copy: os.replace cannot replace a directory
        shutil.rmtree(link)
    os.replace(tmp, link)
    return root


def python_path(sdk: Path, spec_env: dict[str, str]) -> str:
    """The run's PYTHONPATH: the SDK first, then what the spec sets (else what runs inherit)."""
    rest = spec_env["PYTHONPATH"] if "PYTHONPATH" in spec_env else os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(sdk), *(p for p in rest.split(os.pathsep) if p)])
