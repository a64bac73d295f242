"""A Kubernetes API for tests: the emulator (tests/kube/emulator.py) in a background thread, or the real
cluster KUBECONFIG names.

No real kube-apiserver can run here, so by default the tests talk to kmock's KubernetesEmulator, extended;
the same tests run unchanged against a real cluster when KUBECONFIG is set (`emulator` is None then, and
tests that need to play the kubelet or compact the history skip). The emulator runs its own asyncio loop
in a thread so that sync code (the official kubernetes client, runyard's store and runtime) can call it.

Other test directories use it as `from tests.kube.cluster import cluster`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import kmock
from kubernetes import client, config
from tests.kube.emulator import Emulator


@dataclass
class Cluster:
    api_client: client.ApiClient
    emulator: Emulator | None
    url: str


class EmulatorThread:
    """The emulator served on a loopback port by kmock.Server, in a thread with its own event loop."""

    def __init__(self, **emulator_options: object) -> None:
        self._options = emulator_options
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.emulator: Emulator | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._main, name="kube-emulator", daemon=True)

    def start(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes emulator did not start")
        if self._error is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            if self.emulator is not None:
                self.emulator.drop_watches()  # open streams end, so the server can close at once
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.emulator = Emulator(**self._options)  # type: ignore[arg-type]
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()


def emulator_client(url: str) -> client.ApiClient:
    configuration = client.Configuration(host=url)
    return client.ApiClient(configuration)


@contextmanager
def cluster(**emulator_options: object) -> Iterator[Cluster]:
    """The real cluster of KUBECONFIG if set, else a fresh emulator (options: e.g. history_size)."""
    if os.environ.get("KUBECONFIG"):
        api_client = config.new_client_from_config()
        try:
            yield Cluster(api_client, None, api_client.configuration.host)
        finally:
            api_client.close()
        return
    thread = EmulatorThread(**emulator_options).start()
    api_client = emulator_client(thread.url)
    try:
        assert thread.emulator is not None
        yield Cluster(api_client, thread.emulator, thread.url)
    finally:
        api_client.close()
        thread.stop()


def install_crds(api_client: client.ApiClient, wait: bool = True) -> None:
    """runyard's CRDs (runyard.kube.crds) into the cluster; on a real one, wait until they are served.
    In the emulator they also make it prune and validate runyard's objects as the API server would."""
    from runyard.kube.crds import crds

    api = client.ApiextensionsV1Api(api_client)
    for crd in crds():
        try:
            api.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            current = api.read_custom_resource_definition(crd["metadata"]["name"])
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            api.replace_custom_resource_definition(crd["metadata"]["name"], crd)
    deadline = time.monotonic() + 30
    for crd in crds() if wait else []:
        while time.monotonic() < deadline:
            conditions = api.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            time.sleep(0.2)
