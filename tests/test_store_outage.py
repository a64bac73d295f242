"""The store going away and coming back: the API answers 503 meanwhile, the controller keeps going,
and runs that were running finish normally. Uses a PostgreSQL cluster of its own, stopped for real."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import ServerProcess, experiment, read_logs, wait_phase


class Postgres:
    def __init__(self, data: Path):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.fail("PostgreSQL is not installed: run `bash scripts/test.sh`, which installs it")
        self.bin, self.data = Path(bins[-1]), data
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
        self._run(f"{self.bin}/initdb -D {data} -A trust -U postgres")

    def _run(self, command: str) -> None:
        argv = (
            ["su", "postgres", "-s", "/bin/sh", "-c", command] if os.geteuid() == 0 else ["sh", "-c", command]
        )
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        opts = f"-k {self.data} -h 127.0.0.1 -p {self.port} -c fsync=off"
        self._run(f"{self.bin}/pg_ctl -D {self.data} -o '{opts}' -l {self.data}/log -w start")

    def stop(self) -> None:
        self._run(f"{self.bin}/pg_ctl -D {self.data} -m fast -w stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    # Not under pytest's tmp_path: the postgres user must be able to reach its data directory.
    parent = Path(tempfile.mkdtemp(prefix="runyard-pg-"))
    os.chmod(parent, 0o755)
    pg = Postgres(parent / "data")
    pg.start()
    yield pg
    with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
        pg.stop()
    shutil.rmtree(parent, ignore_errors=True)


def test_a_store_outage_is_a_503_and_the_platform_recovers_when_it_returns(postgres, tmp_path):
    srv = ServerProcess(tmp_path / "home", postgres.url).start()
    try:
        api = srv.api()
        api.put("/experiments/through", json=experiment("through", "sleep 2; echo survived"))
        wait_phase(api, "through", {"Running"})
        postgres.stop()
        down = api.get("/experiments")
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "Unavailable"
        time.sleep(2.5)  # long enough for the controller's resyncs to hit the outage
        assert api.put("/experiments/during", json=experiment("during", "true")).status_code == 503
        postgres.start()
        lines, end = read_logs(api, "through")
        assert [entry["text"] for entry in lines] == ["survived"]
        assert end["phase"] == "Succeeded"
        api.put("/experiments/after", json=experiment("after", "echo after"))
        assert wait_phase(api, "after", {"Succeeded"})["status"]["exitCode"] == 0
    finally:
        srv.stop()
