"""Blob uploads stream to disk: the server's memory stays flat whatever the size, and a limit holds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.support import ServerProcess

MiB = 1 << 20


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_large_upload_leaves_the_servers_memory_flat(server_factory):
    srv: ServerProcess = server_factory()
    assert srv.proc is not None
    block = os.urandom(MiB)
    count = 200
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(block)
    before = rss_kib(srv.proc.pid, "VmRSS")

    def body():
        for _ in range(count):
            yield block

    headers = {"Content-Length": str(count * MiB)}
    r = srv.api().put(f"/blobs/{digest.hexdigest()}", content=body(), headers=headers, timeout=120)
    assert r.status_code == 201, r.text
    peak = rss_kib(srv.proc.pid, "VmHWM")  # the high-water mark: growth at any moment of the upload
    assert peak - before < 40 * 1024, f"the server grew by {(peak - before) // 1024} MiB"
    stored = srv.home / "blobs" / digest.hexdigest()[:2] / digest.hexdigest()
    assert stored.stat().st_size == count * MiB


def test_a_blob_over_the_limit_is_refused_with_413(server_factory, monkeypatch):
    monkeypatch.setenv("RUNYARD_SERVER_MAX_BLOB_BYTES", str(MiB))
    api = server_factory().api()
    big = b"x" * (MiB + 1)
    name = hashlib.sha256(big).hexdigest()
    r = api.put(f"/blobs/{name}", content=big)
    assert r.status_code == 413 and "1048576" in r.json()["error"]["message"]
    r = api.put(f"/blobs/{name}", content=iter([big[:MiB], big[MiB:]]))  # chunked: counted as it comes
    assert r.status_code == 413
    manifest = {"files": {"big.bin": {"sha256": name, "size": MiB + 1, "mode": 0o644}}}
    r = api.post("/snapshots", json=manifest)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "files.big.bin.size"
    small = b"y" * MiB
    assert api.put(f"/blobs/{hashlib.sha256(small).hexdigest()}", content=small).status_code == 201
