"""A second server against the same store refuses to start: two controllers would run things twice."""

from __future__ import annotations

import pytest
from tests.support import ServerProcess, experiment, fresh_postgres_database, read_logs


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_second_server_on_the_same_store_is_refused_until_the_first_is_gone(backend, tmp_path):
    store_url = fresh_postgres_database() if backend == "postgres" else None
    first = ServerProcess(tmp_path / "one", store_url).start()
    # Same database: the same home for SQLite (its file lives there), the same URL for PostgreSQL.
    second_home = tmp_path / "one" if backend == "sqlite" else tmp_path / "two"
    with pytest.raises(RuntimeError, match="another runyard server .*already running"):
        ServerProcess(second_home, store_url).start()
    first.kill9()  # the lock dies with the process: no stale lock after a crash
    again = ServerProcess(second_home, store_url).start()
    api = again.api()
    api.put("/experiments/after", json=experiment("after", "echo fine"))
    _, end = read_logs(api, "after")
    assert end["phase"] == "Succeeded"
    again.stop()
