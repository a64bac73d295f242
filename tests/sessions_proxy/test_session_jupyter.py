"""`python -m runyard.sessions.jupyter` on its own, as a session run starts it: on a listening socket it is
handed, at its base URL, with only its token; the python3 kernel runs the environment's Python and
borrows the server's ipykernel, after the environment's own packages, when the environment has none."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.sessions_proxy.proxy_support import execute
from tests.support import until
from websockets.sync.client import connect

from runyard.services.pythons import Pythons

BASE = "/sessions/p/s/"
TOKEN = "the-session-token"


class Jupyter:
    def __init__(self, cwd: Path, editor: str, kernel_python: str):
        self.cwd = cwd
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        env = {
            **os.environ,
            "RUNYARD_SESSION_BASE_URL": BASE,
            "RUNYARD_SESSION_EDITOR": editor,
            "RUNYARD_SESSION_LISTEN_FD": "5",
            "RUNYARD_SESSION_KERNEL_PYTHON": kernel_python,
            "JUPYTER_TOKEN": TOKEN,
        }
        log = open(cwd / "jupyter.log", "wb")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runyard.sessions.jupyter"],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=log,
            pass_fds=[5],
            preexec_fn=lambda: os.dup2(listener.fileno(), 5),
        )
        listener.close()  # the child holds it now
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}{BASE}", headers={"Authorization": f"token {TOKEN}"}
        )
        until(self.answers, "jupyter answers /api/status", 60)

    def answers(self) -> bool:
        assert self.proc.poll() is None, "jupyter exited"
        try:
            return self.http.get("api/status").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture
def env_without_ipykernel(tmp_path) -> Path:
    """A virtualenv of the server's Python version with no ipykernel, and a `yaml` of its own that the
    server also has: the project's must win."""
    root = tmp_path / "env"
    venv.create(root, with_pip=False)
    site = next(root.glob("lib/python*/site-packages"))
    (site / "yaml.py").write_text("WHO = 'the project'\n")
    return root / "bin" / "python"


@pytest.fixture
def lab(tmp_path, env_without_ipykernel) -> Iterator[Jupyter]:
    work = tmp_path / "work"
    work.mkdir()
    jp = Jupyter(work, "jupyterlab", str(env_without_ipykernel))
    yield jp
    jp.stop()


def test_jupyter_serves_on_the_socket_it_is_handed_with_its_token_only(lab):
    assert httpx.get(f"http://127.0.0.1:{lab.port}{BASE}api/status").status_code == 403
    assert lab.http.get("").headers["location"].startswith(BASE + "lab")
    assert '"token": ""' in lab.http.get("lab").text  # the browser signs in to the proxy, not here


def test_the_kernel_runs_the_environments_python_with_the_servers_ipykernel_last(lab, env_without_ipykernel):
    kernel = lab.http.post("api/kernels", json={"name": "python3"}).json()["id"]
    url = f"ws://127.0.0.1:{lab.port}{BASE}api/kernels/{kernel}/channels"
    with connect(url, additional_headers={"Authorization": f"token {TOKEN}"}) as ws:
        assert execute(ws, "import sys; sys.executable") == repr(str(env_without_ipykernel))
        assert execute(ws, "import yaml; yaml.WHO") == "'the project'"  # the environment's own wins
        host = str(Path(__import__("ipykernel").__file__).parent.parent)
        assert execute(ws, "import ipykernel, sys; sys.path[-1]") == repr(host)
        assert execute(ws, "import os; os.getcwd()") == repr(str(lab.cwd))  # the session's directory


def test_a_terminal_session_has_terminals_and_no_jupyterlab(tmp_path):
    jp = Jupyter(tmp_path, "terminal", sys.executable)
    try:
        assert jp.http.get("lab").status_code == 404
        assert jp.http.post("api/terminals").status_code == 200
    finally:
        jp.stop()


def test_an_environment_of_another_python_without_ipykernel_is_told_to_add_it(tmp_path):
    """The server's ipykernel cannot load in another Python version (pyzmq is built for one): the kernel
    says so, naming the fix, rather than dying with an import traceback."""
    ours = sys.version_info[:2]
    other = next((i for i in Pythons().all() if tuple(map(int, i.version.split(".")[:2])) != ours), None)
    if other is None:
        pytest.skip("this host has no Python of another version than the server's")
    subprocess.run([other.path, "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True)
    work = tmp_path / "work"
    work.mkdir()
    jp = Jupyter(work, "jupyterlab", str(tmp_path / "env" / "bin" / "python"))
    try:
        jp.http.post("api/kernels", json={"name": "python3"})  # Jupyter may answer before it dies
        log = work / "jupyter.log"
        until(lambda: "add ipykernel to the environment's requirements" in log.read_text(), "the advice", 30)
        assert f"Python {other.version.rsplit('.', 1)[0]}" in log.read_text()
    finally:
        jp.stop()
