"""The jobs CLI tests' fixtures: one real server per module, and the CLI run as users run it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.cli.helpers import Server, runyard_cli


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("jobs-cli") / "home").start()
    yield server
    server.stop()


@pytest.fixture
def cli(srv: Server) -> Callable:
    """`cli(*args, stdin=...)`: the CLI in its own process against the module's server."""

    def run(*args: str, stdin: str | None = None):
        return runyard_cli(*args, env=srv.env(), stdin=stdin)

    return run


@pytest.fixture
def apply(cli: Callable) -> Callable:
    def run(*docs: str) -> None:
        done = cli("apply", "-f", "-", "--no-snapshot", stdin="---\n".join(docs))
        assert done.returncode == 0, done.stderr

    return run
