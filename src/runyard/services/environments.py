"""Environments: a project's dependencies built once, with uv, into an immutable content-addressed
virtualenv, reused by every run (of any project) that needs the same thing.

An environment's id hashes what it is made of: the Python (full version, implementation), the platform
and the dependency files. Builds run on a small thread pool of the server, never on the controller's
thread; whoever asks first claims the build in the store, the others wait for it, and a build whose server
died is taken over. Ready environments are immutable until removed, so the path a warm run takes (a
snapshot seen before, an environment known Ready) reads only memory and one stat of the marker file.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import socket
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from runyard.core.clock import now as utcnow
from runyard.core.errors import Conflict, FieldError, Invalid, NotFound
from runyard.core.kinds import name_problem
from runyard.core.phases import Reason
from runyard.services.env_build import (
    MARKER,
    BuildCancelled,
    BuildFailed,
    UvBuild,
    kill,
    lock_digest,
    remove_tree,
    uv_version,
)
from runyard.services.notify import Notifier
from runyard.services.pythons import Interpreter, NoInterpreter, Pythons, parse_version_request
from runyard.services.snapshots import BlobStore
from runyard.settings import RuntimeSettings
from runyard.store import Store
from runyard.store.environments import BUILDING, FAILED, READY, REMOVED

log = logging.getLogger(__name__)

SOURCE_FILES = ("requirements.txt", "pyproject.toml", "uv.lock", ".python-version")
RESERVED_NAMES = ("default", "system")  # what spec.environment means by itself
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0  # a Building record without a heartbeat for this long: its builder is gone
GC_SECONDS = 600.0
USE_WRITE_SECONDS = 60.0  # last_used_at is written at most this often per environment
WAIT_SECONDS = 10.0  # a waiting run looks again after this, should the notice of a build's end be missed
ID_FORMAT = 1  # bump when what an id hashes changes


class EnvironmentProblem(Exception):
    """A run cannot have the environment it asks for: it fails with `reason` and this message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Plan:
    """What an environment is made of, before it is built: its id follows from it."""

    id: str
    kind: str  # requirements | uv.lock | pyproject
    files: dict[str, str]  # the files it is built from
    python: Interpreter

    def fields(self) -> dict[str, Any]:
        """The columns of its record, as first claimed."""
        return {
            "id": self.id,
            "message": "",
            "python": self.python.as_dict(),
            "platform": self.python.platform,
            "source_kind": self.kind,
            "source_files": self.files,
            "packages": [],
            "builder": uv_version(),
        }


def source_kind(files: dict[str, str]) -> tuple[str, list[str]] | None:
    """Which dependency files count, and as what: requirements.txt; else pyproject.toml with uv.lock; else
    pyproject.toml alone when it declares a [project]. None: the files declare no dependencies."""
    if "requirements.txt" in files:
        return "requirements", ["requirements.txt"]
    if "pyproject.toml" in files:
        if "uv.lock" in files:
            return "uv.lock", ["pyproject.toml", "uv.lock"]
        try:
            if "project" in tomllib.loads(files["pyproject.toml"]):
                return "pyproject", ["pyproject.toml"]
        except tomllib.TOMLDecodeError:
            return "pyproject", ["pyproject.toml"]  # uv will say what is wrong with it
    return None


def requires_python(files: dict[str, str]) -> str | None:
    with contextlib.suppress(tomllib.TOMLDecodeError, AttributeError):
        value = tomllib.loads(files.get("pyproject.toml", "")).get("project", {}).get("requires-python")
        return value if isinstance(value, str) else None
    return None


def environment_id(python: Interpreter, kind: str, files: dict[str, str]) -> str:
    """sha256 of canonical JSON of the Python, the platform, the source kind and the files' bytes."""
    doc = {
        "format": ID_FORMAT,
        "python": python.version,
        "implementation": python.implementation,
        "platform": python.platform,
        "source": kind,
        "files": {n: hashlib.sha256(t.encode()).hexdigest() for n, t in sorted(files.items())},
    }
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()


def short(env_id: str) -> str:
    return env_id[:19]


def record(row: dict[str, Any], names: Iterable[str] = ()) -> dict[str, Any]:
    """A record as the API shows it."""

    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    files = row["source_files"] or {}
    return {
        "id": row["id"],
        "names": sorted(names),
        "state": row["state"],
        "message": row["message"] or "",
        "python": row["python"],
        "platform": row["platform"],
        "source": {"kind": row["source_kind"], "files": sorted(files)},
        "lock": row["lock"],
        "lockDigest": row["lock_digest"],
        "packages": row["packages"] or [],
        "sizeBytes": row["size_bytes"],
        "createdAt": iso(row["created_at"]),
        "builtAt": iso(row["built_at"]) if row["state"] in (READY, REMOVED) else None,
        "lastUsedAt": iso(row["last_used_at"]),
        "buildSeconds": row["build_seconds"],
        "builder": row["builder"],
    }


class Environments:
    """The environments service: plans, builds (in background threads), records in the store, removal."""

    def __init__(
        self,
        store: Store,
        home: Path,
        blobs: BlobStore,
        notifier: Notifier,
        settings: RuntimeSettings | None = None,
        workers: int = 2,
        adopt: bool = True,
    ):
        """`adopt`: this server holds the store's controller lock, so a Building record of another owner
        is a build cut short by a server that died: build it again at once."""
        self.store, self.blobs, self.notifier = store, blobs, notifier
        self.settings = settings or RuntimeSettings()
        self.root = home / "envs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.pythons_found = Pythons(self.settings.pythons)
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="runyard-env-build")
        self._lock = threading.RLock()
        self._jobs: set[str] = set()  # ids this server is building
        self._waiters: dict[str, set[str]] = {}  # id -> uids of runs to wake when its build ends
        self._ready: dict[str, dict[str, Any]] = {}  # Ready rows (immutable until removed)
        self._plans: dict[str, Plan | None] = {}  # snapshot id -> what its files need (None: nothing)
        self._names: dict[tuple[str, str], str] = {}  # (project, name) -> id, as last written here
        self._used: dict[str, float] = {}  # id -> monotonic time last_used_at was written
        self._procs: set[subprocess.Popen] = set()
        self._closing = threading.Event()
        self.builds_started = 0  # builds this server started (tests and benchmarks read it)
        self._thread = threading.Thread(
            target=self._background, args=(adopt,), name="runyard-env-keeper", daemon=True
        )
        self._thread.start()

    # ---- what users and the API call

    def request(
        self, project: str, files: dict[str, str], python: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """Start (or reuse) the build of the environment these files describe; a Failed one is built again.
        Names it in the project when `name` is given. Returns its record at once."""
        problems = [
            FieldError(
                f"files.{n}", f"not a dependency file runyard reads (one of {', '.join(SOURCE_FILES)})"
            )
            for n in files
            if n not in SOURCE_FILES
        ]
        if name is not None and (problem := name_problem(name) or _reserved(name)):
            problems.append(FieldError("name", problem))
        if not problems and source_kind(files) is None:
            problems.append(
                FieldError(
                    "files", "no dependencies: give requirements.txt, or pyproject.toml (with uv.lock)"
                )
            )
        if problems:
            raise Invalid("cannot build this environment", problems)
        try:
            plan = self.plan(files, python)
        except NoInterpreter as exc:
            raise Invalid("cannot build this environment", [FieldError("python", str(exc))]) from None
        assert plan is not None
        row = self._ensure(plan.fields(), new_request=True)
        self.store.env_add_project(project, plan.id)
        if name:
            self._set_name(project, name, plan.id)
        return record(row, self.store.env_names(project).get(plan.id, []))

    def get(self, project: str, ref: str) -> dict[str, Any]:
        env_id = self.resolve(project, ref)
        row = self.store.env_get(env_id)
        if row is None:
            raise NotFound(f"environment {ref} not found")
        return record(row, self.store.env_names(project).get(env_id, []))

    def list(self, project: str) -> builtins.list[dict[str, Any]]:
        """The environments the project named, built or ran in, newest first."""
        names = self.store.env_names(project)
        rows = self.store.env_list(self.store.env_ids_of(project))
        rows.sort(key=lambda r: r["created_at"], reverse=True)
        return [record(r, names.get(r["id"], [])) for r in rows]

    def log(self, env_id: str, offset: int = 0) -> tuple[str, int, bool]:
        """The build log from byte `offset`: (text, next offset, complete). Complete once the build is over
        and the text reaches the end."""
        row = self.store.env_get(env_id)
        over = row is None or row["state"] != BUILDING
        try:
            with open(self.log_path(env_id), "rb") as f:
                f.seek(max(0, offset))
                data = f.read()
        except FileNotFoundError:
            return "", offset, over
        end = offset + len(data)
        if not over and data and not data.endswith(b"\n"):  # hand out whole lines while it grows
            cut = data.rfind(b"\n") + 1
            data, end = data[:cut], offset + cut
        return data.decode(errors="replace"), end, over

    def wait(self, env_id: str, timeout: float) -> dict[str, Any]:
        """The record once its build is over (or after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.store.env_get(env_id)
            if row is None:
                raise NotFound(f"environment {env_id} not found")
            if row["state"] != BUILDING or time.monotonic() >= deadline:
                return record(row)
            time.sleep(0.05)

    def remove(self, project: str, ref: str) -> None:
        """A name: drop the name. An id: remove its files (state Removed; the record and lock stay), unless
        an unfinished run uses it."""
        if not ref.startswith("sha256:"):
            if not self.store.env_drop_names(project, name=ref):
                raise NotFound(f"environment {ref!r} not found in project {project}: see `runyard env list`")
            self._names.pop((project, ref), None)
            return
        env_id = self.resolve(project, ref)
        with self._lock:
            row = self.store.env_get(env_id)
            if row and row["state"] == BUILDING:
                raise Conflict(f"environment {short(env_id)} is building: remove it once its build is over")
            users = self.store.env_users(env_id)
            if users:
                p, n = users[0]
                shown = n if p == project else "a run of another project"
                raise Conflict(
                    f"environment {short(env_id)} is used by run {shown}: stop it or wait, then remove"
                )
            self._remove_files(env_id)
        self.store.env_drop_names(project, env_id=env_id)
        for key in [k for k, v in list(self._names.items()) if v == env_id]:
            del self._names[key]

    def pythons(self) -> builtins.list[dict[str, Any]]:
        return [i.as_dict() for i in self.pythons_found.all()]

    def collect(self, now: datetime | None = None) -> builtins.list[str]:
        """Remove the files of environments no run has used for env_retention_seconds and that no
        unfinished run uses; their records stay (Removed). Returns the ids removed."""
        cutoff = (now or utcnow()) - timedelta(seconds=self.settings.env_retention_seconds)
        removed = []
        for row in self.store.env_ready_unused_since(cutoff):
            with self._lock:
                if self.store.env_users(row["id"]):
                    continue
                self._remove_files(row["id"])
            removed.append(row["id"])
            log.info("removed environment %s, unused since %s", row["id"], row["last_used_at"])
        return removed

    def close(self) -> None:
        """Stop building; a build cut short is started again by the next server."""
        self._closing.set()
        kill(self._procs)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._thread.join(timeout=5)

    # ---- what the controller calls

    def for_run(
        self, project: str, run_uid: str, choice: str, snapshot: str | None, waited: bool
    ) -> dict[str, Any] | None:
        """The record of the environment a run needs (None: the host's Python), starting its build if need
        be (then the run is woken when it ends). `waited`: the run has been waiting for a build, so a
        Failed one fails it rather than being built again. Raises EnvironmentProblem."""
        if choice == "system":
            return None
        plan = self._snapshot_plan(snapshot) if choice == "default" else None
        if choice == "default" and plan is None:
            return None
        env_id = plan.id if plan else self._run_ref(project, choice)
        row = self._ready.get(env_id)
        if row is None or not self.has_files(env_id):
            self._ready.pop(env_id, None)
            fields = plan.fields() if plan else None
            row = self._ensure(fields, env_id=env_id, new_request=not waited, waiter=run_uid)
        if choice == "default" and self._names.get((project, "default")) != env_id:
            self._set_name(project, "default", env_id)
        if row["state"] == FAILED and waited:
            raise EnvironmentProblem(Reason.ENVIRONMENT_BUILD_FAILED, row["message"])
        return row

    def directory(self, env_id: str) -> Path:
        return self.root / env_id.removeprefix("sha256:")

    def log_path(self, env_id: str) -> Path:
        return self.root / (env_id.removeprefix("sha256:") + ".log")

    def has_files(self, env_id: str) -> bool:
        return os.path.exists(self.directory(env_id) / MARKER)

    def mark_used(self, env_id: str) -> None:
        """A run launches in it: keep it from GC (written at most once a minute per environment)."""
        t = time.monotonic()
        if t - self._used.get(env_id, -USE_WRITE_SECONDS) >= USE_WRITE_SECONDS:
            self._used[env_id] = t
            self.store.env_update(env_id, last_used_at=utcnow())

    # ---- plans and resolution

    def plan(self, files: dict[str, str], python: str | None = None) -> Plan | None:
        """What these files need (None: no dependencies). Raises NoInterpreter."""
        found = source_kind(files)
        if found is None:
            return None
        kind, used = found
        wanted = python or parse_version_request(files.get(".python-version", ""))
        interp = self.pythons_found.choose(wanted, requires_python(files))
        sources = {n: files[n] for n in used}
        return Plan(environment_id(interp, kind, sources), kind, sources, interp)

    def resolve(self, project: str, ref: str) -> str:
        """A name of the project, or an id (or unique prefix of one) the project asked for."""
        if not ref.startswith("sha256:"):
            env_id = self.store.env_named(project, ref)
            if env_id is None:
                raise NotFound(
                    f"environment {ref!r} not found in project {project}: build it with "
                    f"`runyard env build --name {ref}`, or see `runyard env list`"
                )
            return env_id
        ids = self.store.env_ids_of(project, ref)
        if len(ids) != 1:
            raise NotFound(
                f"environment {ref} is not one this project has used or built: see `runyard env list`"
                if not ids
                else f"{ref} matches {len(ids)} environments of this project: give more of the id"
            )
        return ids[0]

    def _run_ref(self, project: str, ref: str) -> str:
        """A run's named or pinned environment. Names are cached: only this server (the one holding the
        store's controller lock) changes them, through this service."""
        known = self._names.get((project, ref))
        if known is not None:
            return known
        try:
            env_id = self.resolve(project, ref)
        except NotFound as exc:
            raise EnvironmentProblem(Reason.ENVIRONMENT_NOT_FOUND, exc.message) from None
        if not ref.startswith("sha256:"):
            self._names[(project, ref)] = env_id
        return env_id

    def _snapshot_plan(self, snapshot: str | None) -> Plan | None:
        if snapshot is None:
            return None
        if snapshot in self._plans:
            return self._plans[snapshot]
        files = self._snapshot_files(snapshot)
        try:
            plan = self.plan(files)
        except NoInterpreter as exc:
            names = ", ".join(sorted(n for n in files if n in SOURCE_FILES))
            raise EnvironmentProblem(
                Reason.ENVIRONMENT_BUILD_FAILED, f"cannot build the environment of {names}: {exc}"
            ) from None
        self._plans[snapshot] = plan
        return plan

    def _snapshot_files(self, snapshot: str) -> dict[str, str]:
        """The dependency files at the top of a snapshot."""
        manifest = self.store.get_snapshot(snapshot)
        files = {}
        for name in SOURCE_FILES:
            entry = manifest.get(name)
            if entry is not None:
                files[name] = self.blobs.path(entry["sha256"]).read_bytes().decode(errors="replace")
        return files

    def _set_name(self, project: str, name: str, env_id: str) -> None:
        self.store.env_set_name(project, name, env_id)
        self._names[(project, name)] = env_id

    # ---- builds

    def _ensure(
        self,
        fields: dict[str, Any] | None,
        env_id: str | None = None,
        new_request: bool = True,
        waiter: str | None = None,
    ) -> dict[str, Any]:
        """The environment's record, a build started if it needs one: none yet (claim it), Removed or its
        files gone, Failed and asked anew, or Building by a server that stopped heartbeating."""
        env_id = env_id or (fields or {})["id"]
        with self._lock:
            row = self.store.env_get(env_id)
            if row is None:
                if fields is None:
                    raise EnvironmentProblem(Reason.ENVIRONMENT_NOT_FOUND, f"environment {env_id} not found")
                if self.store.env_claim(fields, self.owner):
                    self._start(env_id)
                row = self.store.env_get(env_id)
                assert row is not None
            state = row["state"]
            if state == READY and self.has_files(env_id):
                self._ready[env_id] = row
                return row
            rebuild = (
                state in (READY, REMOVED)
                or (state == FAILED and new_request)
                or (state == BUILDING and row["owner"] != self.owner and self._stale(row))
            )
            if rebuild and self.store.env_take_over(env_id, self.owner, row):
                self._start(env_id)
                row = self.store.env_get(env_id) or row
            elif state == BUILDING and row["owner"] == self.owner and env_id not in self._jobs:
                self._start(env_id)  # claimed here, its job lost (never expected)
            if waiter and row["state"] == BUILDING:
                self._waiters.setdefault(env_id, set()).add(waiter)
            return row

    def _stale(self, row: dict[str, Any]) -> bool:
        beat = row["heartbeat_at"]
        return beat is None or (utcnow() - beat).total_seconds() > STALE_SECONDS

    def _start(self, env_id: str) -> None:
        if self._closing.is_set() or env_id in self._jobs:
            return
        self._jobs.add(env_id)
        self.builds_started += 1
        log.info("building environment %s", env_id)
        self._pool.submit(self._build, env_id)

    def _build(self, env_id: str) -> None:
        started = time.monotonic()
        try:
            row = self.store.env_get(env_id)
            if row is None or row["state"] != BUILDING or row["owner"] != self.owner:
                return
            interp = self._interpreter(row)
            build = UvBuild(self.directory(env_id), self.log_path(env_id), self._procs, self._closing)
            try:
                built = build.run(interp, row["source_kind"], row["source_files"])
            except BuildCancelled:
                return
            except (BuildFailed, NoInterpreter, OSError) as exc:
                lock = getattr(exc, "lock", None)
                self.store.env_update(
                    env_id,
                    owner=self.owner,
                    state=FAILED,
                    message=f"environment {env_id} failed to build: {exc}",
                    lock=lock,
                    lock_digest=lock_digest(lock) if lock else None,
                    built_at=utcnow(),
                    build_seconds=round(time.monotonic() - started, 3),
                )
                log.warning("environment %s failed to build: %s", env_id, exc)
                return
            self.store.env_update(
                env_id,
                owner=self.owner,
                state=READY,
                message=f"built in {time.monotonic() - started:.1f}s",
                lock=built.lock,
                lock_digest=lock_digest(built.lock),
                packages=built.packages,
                size_bytes=built.size_bytes,
                built_at=utcnow(),
                last_used_at=utcnow(),
                build_seconds=round(time.monotonic() - started, 3),
                heartbeat_at=None,
            )
            with open(self.log_path(env_id), "ab") as f:
                f.write(f"ready in {time.monotonic() - started:.1f}s\n".encode())
        except Exception as exc:  # noqa: BLE001 - a record must not stay Building for a bug
            log.exception("building environment %s", env_id)
            with contextlib.suppress(Exception):
                self.store.env_update(
                    env_id,
                    owner=self.owner,
                    state=FAILED,
                    message=f"environment {env_id} failed to build: {exc}",
                )
        finally:
            with self._lock:
                self._jobs.discard(env_id)
                waiters = self._waiters.pop(env_id, set())
            for uid in waiters:
                self.notifier.touch(uid)

    def _interpreter(self, row: dict[str, Any]) -> Interpreter:
        py = row["python"]
        interp = self.pythons_found.by_version(py["version"], py["implementation"])
        if interp is None:
            raise NoInterpreter(
                f"Python {py['version']} ({py['implementation']}) is no longer installed on this server"
            )
        return interp

    def _remove_files(self, env_id: str) -> None:
        """Files first: a crash between leaves a Ready record without files, which is rebuilt when asked."""
        self._ready.pop(env_id, None)
        self._plans = {k: v for k, v in self._plans.items() if v is None or v.id != env_id}
        marker = self.directory(env_id) / MARKER
        with contextlib.suppress(OSError):
            os.chmod(marker.parent, 0o755)
            marker.unlink()
        remove_tree(self.directory(env_id))
        self.store.env_update(env_id, state=REMOVED)

    def _adopt(self) -> None:
        for row in self.store.env_building():
            if row["owner"] != self.owner:
                with self._lock:
                    if self.store.env_take_over(row["id"], self.owner, row):
                        log.info("environment %s: its build was cut short; building it again", row["id"])
                        self._start(row["id"])

    def _background(self, adopt: bool) -> None:
        """Heartbeats of this server's builds, the builds a dead server left, and GC every 10 minutes."""
        if adopt:
            try:
                self._adopt()
            except Exception:  # noqa: BLE001 - a run that waits for one takes it over once it is stale
                log.warning("could not restart the builds a previous server left", exc_info=True)
        last_gc = time.monotonic()
        while not self._closing.wait(HEARTBEAT_SECONDS):
            try:
                if self._jobs:
                    self.store.env_heartbeat(self.owner)
                if time.monotonic() - last_gc >= GC_SECONDS:
                    last_gc = time.monotonic()
                    self.collect()
            except Exception:  # noqa: BLE001 - a store outage: try again at the next beat
                log.warning("environment upkeep failed; trying again", exc_info=True)


def _reserved(name: str) -> str | None:
    if name in RESERVED_NAMES:
        return f"{name!r} is what spec.environment means by itself: choose another name"
    return None
