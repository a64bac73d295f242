"""Real servers whose node offers 2 cores and 2 GPUs. The GPUs are a simulated inventory configured
explicitly (RUNYARD_RUNTIME_SIMULATED_GPUS=2): this host has no NVIDIA GPU, and what is tested is the
bookkeeping (who holds which index, what CUDA_VISIBLE_DEVICES says), not the device."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import ServerProcess, experiment, read_logs

NODE = {"RUNYARD_RUNTIME_SIMULATED_GPUS": "2", "RUNYARD_RUNTIME_NODE_CPU": "2"}
# Prints when it started and ended (this host's clock, as the other runs read it) and the GPUs it sees.
TIMED = (
    "import os, sys, time; t = time.time(); "
    "print('gpus=' + os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'), flush=True); "
    "time.sleep(float(sys.argv[1])); print('span', t, time.time(), flush=True)"
)


def capacity_server(home: Path, store_url: str | None = None, **env: str) -> ServerProcess:
    return ServerProcess(home, store_url, env={**os.environ, **NODE, **env}).start()


@pytest.fixture(scope="session")
def node_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """Shared by this directory's tests: each leaves the node as it found it (its runs ended)."""
    srv = capacity_server(tmp_path_factory.mktemp("capacity") / "home")
    yield srv
    srv.stop()


def timed(name: str, seconds: float, **spec) -> dict:
    """An experiment whose run reports its span and its GPUs (see `span`)."""
    return experiment(name, [sys.executable, "-c", TIMED, str(seconds)], **spec)


def span(api: httpx.Client, run: str) -> tuple[str, float, float]:
    """(CUDA_VISIBLE_DEVICES, start, end) the run printed; waits for it to end."""
    lines, end = read_logs(api, run)
    assert end["phase"] == "Succeeded", (run, end, lines)
    texts = [e["text"] for e in lines]
    gpus = next(t for t in texts if t.startswith("gpus="))
    _, start, stop = next(t for t in texts if t.startswith("span ")).split()
    return gpus.removeprefix("gpus="), float(start), float(stop)


def nodes(srv: ServerProcess, token: str | None = None) -> list[dict]:
    r = httpx.get(
        f"{srv.url}/apis/runyard.dev/v1/nodes", headers={"Authorization": f"Bearer {token or srv.token}"}
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (one ending as another starts do not overlap)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most
