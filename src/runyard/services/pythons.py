"""The Python interpreters installed on this host that environments may be built on.

Found on PATH (python3, python3.N), under pyenv (`$PYENV_ROOT`, else ~/.pyenv: versions/*/bin/python3) and
in RuntimeSettings.pythons; each is asked once for its version, implementation and platform. uv is never
allowed to download one: an environment's Python is one the host has.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

OLDEST = (3, 8)  # what uv builds virtualenvs for
_PROBE = (
    "import json, platform, sys, sysconfig; libc = ' '.join(platform.libc_ver()).strip();"
    "print(json.dumps([platform.python_version(), platform.python_implementation().lower(),"
    " (sysconfig.get_platform() + ' ' + libc).strip(), sys.executable]))"
)
VERSION_RE = re.compile(r"^(?:cpython-|python)?(\d+(?:\.\d+){0,2})$")
SPECIFIER_RE = re.compile(r"^(===|==|!=|~=|>=|<=|>|<)\s*v?(\d+(?:\.\d+){0,2})(\.\*)?$")


@dataclass(frozen=True)
class Interpreter:
    version: str  # "3.11.7"
    implementation: str  # "cpython"
    path: str
    platform: str  # sysconfig's platform and the libc: "linux-x86_64 glibc 2.36"

    def as_dict(self) -> dict:
        return {"version": self.version, "implementation": self.implementation, "path": self.path}


class NoInterpreter(Exception):
    """No installed interpreter fits what was asked; the message names what was asked and what there is."""


class Pythons:
    """The host's interpreters, discovered once (on first use) and kept."""

    def __init__(self, extra: str | None = None):
        self.extra = [p for p in (extra or "").split(":") if p]
        self._found: list[Interpreter] | None = None
        self._own: list[Interpreter | None] = []  # the server's own, probed alone: [] until then
        self._lock = threading.Lock()

    def all(self) -> list[Interpreter]:
        """Every usable interpreter, newest version first; the server's own first among equal versions."""
        with self._lock:
            if self._found is None:
                self._found = _discover(tuple(self.extra))
            return list(self._found)

    def server_default(self) -> Interpreter | None:
        """The interpreter the server runs on (its base, not a virtualenv's). Probed alone: a project that
        names no Python never waits for (nor a server start pays) probing every interpreter of the host,
        up to a few seconds under load."""
        with self._lock:
            if not self._own:
                base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
                found = self._found or []
                known = next((i for i in found if os.path.realpath(i.path) == base), None)
                self._own.append(known or _probe(base))
            return self._own[0]

    def choose(self, wanted: str | None, requires: str | None = None) -> Interpreter:
        """`wanted` ("3.12" or "3.12.1", from .python-version or the request), else the newest that satisfies
        `requires` (pyproject's requires-python), else the server's own."""
        if not wanted and not requires and (own := self.server_default()) is not None:
            return own
        found = self.all()
        if wanted:
            got = _matching(found, wanted)
            if got is None:
                raise NoInterpreter(f"Python {wanted} is not installed on this server ({_available(found)})")
            return got
        own = self.server_default()
        if requires:
            fits = [i for i in found if satisfies(i.version, requires)]
            if not fits:
                raise NoInterpreter(
                    f"no installed Python satisfies requires-python {requires!r} ({_available(found)})"
                )
            return own if own in fits and own.version == fits[0].version else fits[0]
        if not found:
            raise NoInterpreter("no Python interpreter was found on this server")
        return found[0]

    def by_version(self, version: str, implementation: str) -> Interpreter | None:
        return next(
            (i for i in self.all() if (i.version, i.implementation) == (version, implementation)), None
        )


def parse_version_request(text: str) -> str | None:
    """The version a .python-version file (or a request) asks for, or None if it is not one we read."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            m = VERSION_RE.match(line)
            return m.group(1) if m else None
    return None


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def satisfies(version: str, requires: str) -> bool:
    """Whether a release version (3.11.7) meets a PEP 440 specifier such as '>=3.10,<3.13' or '~=3.11'
    (the forms requires-python uses; an unreadable clause raises NoInterpreter, naming it)."""
    have = version_key(version)
    for clause in filter(None, (c.strip() for c in requires.split(","))):
        m = SPECIFIER_RE.match(clause)
        if not m:
            raise NoInterpreter(f"requires-python {requires!r}: {clause!r} is not a version specifier")
        op, ver, star = m.group(1), m.group(2), m.group(3)
        want = version_key(ver)
        if star or op == "~=":
            prefix = want if star else want[:-1]
            ok = have[: len(prefix)] == prefix and (star or have >= _pad(want))
            if (op == "!=" and ok) or (op != "!=" and not ok):
                return False
            continue
        mine, theirs = _pad(have), _pad(want)
        ok = {
            "==": mine == theirs,
            "===": mine == theirs,
            "!=": mine != theirs,
            ">=": mine >= theirs,
            "<=": mine <= theirs,
            ">": mine > theirs,
            "<": mine < theirs,
        }[op]
        if not ok:
            return False
    return True


def _pad(v: tuple[int, ...]) -> tuple[int, ...]:
    return (v + (0, 0, 0))[:3]


def _matching(found: list[Interpreter], wanted: str) -> Interpreter | None:
    parts = wanted.split(".")
    return next((i for i in found if i.version.split(".")[: len(parts)] == parts), None)


def _available(found: list[Interpreter]) -> str:
    if not found:
        return "none is installed"
    versions = sorted({i.version for i in found}, key=version_key, reverse=True)
    return "installed: " + ", ".join(versions)


def _candidates(extra: tuple[str, ...]) -> list[str]:
    own = getattr(sys, "_base_executable", None) or sys.executable
    paths = [own, *extra]
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    shims = os.path.realpath(root / "shims")  # pyenv's dispatchers: its versions are listed below
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or os.path.realpath(folder) == shims or not os.path.isdir(folder):
            continue
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        paths += [os.path.join(folder, n) for n in names if re.fullmatch(r"python3(\.\d+)?", n)]
    if (root / "versions").is_dir():
        paths += [str(v / "bin" / "python3") for v in sorted((root / "versions").iterdir())]
    return paths


@cache  # what is installed does not change under a running server
def _discover(extra: tuple[str, ...]) -> list[Interpreter]:
    unique: dict[str, str] = {}
    for path in _candidates(extra):
        real = os.path.realpath(path)
        if real not in unique and os.path.isfile(real) and os.access(real, os.X_OK):
            unique[real] = path
    with ThreadPoolExecutor(8) as pool:
        probed = list(pool.map(_probe, unique.values()))
    found: list[Interpreter] = []
    for interp in probed:  # in the order found: the server's own first among equal versions
        if interp and not any(os.path.realpath(f.path) == os.path.realpath(interp.path) for f in found):
            found.append(interp)
    found.sort(key=lambda i: version_key(i.version), reverse=True)
    return found


def _probe(path: str) -> Interpreter | None:
    try:
        out = subprocess.run(
            [path, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=15, check=True
        ).stdout
        version, impl, platform, executable = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if version_key(version)[:2] < OLDEST:
        return None
    return Interpreter(version, impl, executable or path, platform)
