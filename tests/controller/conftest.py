"""An in-process controller on a real store (SQLite), a real local runtime and real processes, for tests
that need to arrange what the API cannot (a blob that never finishes copying, a failure injected into
the store) or to read the controller's settings."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from runyard.controller.context import Context
from runyard.controller.loop import Controller
from runyard.core.errors import Conflict
from runyard.core.resources import Experiment, ExperimentSpec, ObjectMeta, Run
from runyard.runtime.local import LocalRuntime
from runyard.services.artifacts import ArtifactStore
from runyard.services.notify import Notifier
from runyard.services.snapshots import BlobStore, snapshot_files
from runyard.settings import ControllerSettings
from runyard.store import Store

PROJECT = "default"


class Platform:
    def __init__(self, home: Path, store: Store | None = None, **settings) -> None:
        self.home = home
        self.store = store or Store(f"sqlite:///{home / 'runyard.db'}")
        self.store.ensure_project(PROJECT)
        self.blobs = BlobStore(home / "blobs")
        self.runtime = LocalRuntime(home, lambda sid: snapshot_files(self.store, self.blobs, sid))
        self.notifier = Notifier()
        self.artifacts = ArtifactStore(str(home / "artifacts"), 1 << 30)
        ctx = Context(
            self.store,
            self.runtime,
            self.notifier,
            ControllerSettings(**settings),
            "http://127.0.0.1:9",
            self.artifacts,
        )
        self.controller = Controller(ctx)

    def submit(self, name: str, command: str | list[str], **spec) -> Experiment:
        spec = ExperimentSpec.model_validate({"command": command, **spec})
        exp = Experiment(metadata=ObjectMeta(name=name, project=PROJECT), spec=spec)
        created = self.store.create(exp)
        self.notifier.touch(created.uid)
        return created

    def run(self, name: str) -> Run:
        return self.store.get(Run, PROJECT, name)

    def stop(self, name: str) -> None:
        """What POST .../runs/{name}/stop does."""
        while True:
            run = self.run(name)
            run.spec.stopRequested = True
            try:
                self.notifier.touch(self.store.replace(run, run.metadata.resourceVersion).uid)
                return
            except Conflict:
                continue

    def wait(self, name: str, done: Callable[[Run], bool], timeout: float = 20) -> Run:
        deadline = time.monotonic() + timeout
        while True:
            try:
                run = self.run(name)
                if done(run):
                    return run
            except Exception:
                run = None
            assert time.monotonic() < deadline, f"run {name}: {run.status if run else 'not created'}"
            time.sleep(0.02)

    def wait_phase(self, name: str, *phases: str, timeout: float = 20) -> Run:
        return self.wait(name, lambda r: r.status.phase in phases, timeout)

    def close(self) -> None:
        self.controller.stop()
        for state in self.home.glob("runs/*/attempt-*/state.json"):  # shims too (they work in /)
            self.runtime.stop({"dir": str(state.parent), **json.loads(state.read_text())}, 0)
        self.runtime.close()
        for proc in psutil.process_iter(["cwd"]):  # leave no run's process behind
            if (proc.info["cwd"] or "").startswith(str(self.home) + os.sep):
                proc.kill()
        self.store.close()


@pytest.fixture
def platform_factory(tmp_path: Path) -> Iterator[Callable[..., Platform]]:
    made: list[Platform] = []

    def make(**settings) -> Platform:
        platform = Platform(tmp_path / f"home{len(made)}", **settings)
        made.append(platform)
        platform.controller.start()
        return platform

    yield make
    for platform in made:
        platform.close()
