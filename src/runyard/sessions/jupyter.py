"""A Session's process: a Jupyter server on the listening socket the runyard server made and handed over.

Run as `python -m runyard.sessions.jupyter` inside the session's sandbox, with the server's Python (so
jupyter_server and jupyterlab are importable), in the session's directory. It reads:

  RUNYARD_SESSION_BASE_URL       Jupyter's base_url, the proxy's path prefix (/sessions/<project>/<name>/)
  RUNYARD_SESSION_EDITOR         jupyterlab | terminal (terminals only, no JupyterLab)
  RUNYARD_SESSION_LISTEN_FD      an inherited, listening loopback TCP socket to accept on
  RUNYARD_SESSION_KERNEL_PYTHON  the Python the "python3" kernel runs (the project's environment's)
  JUPYTER_TOKEN                  the only credential it accepts (the proxy sends it; kept from kernels)

Jupyter's config, data and runtime directories, and IPython's, are the directory's `.jupyter` (the
sandbox's home is read-only and its /tmp private), so JupyterLab's settings and workspaces are kept with
the session's files across stops.

The kernel runs in the project's environment, ipykernel added: when the environment's Python cannot
import ipykernel, the directory the server's ipykernel is installed in is appended to the END of the
kernel's sys.path, so the project's own packages win over the server's (the server's other packages are
importable too, after the project's). That borrowed ipykernel needs the environment's Python to be the
server's version (major.minor): its compiled dependencies (pyzmq, psutil, debugpy) are built for one
version only. With another version the kernel exits at once saying to add `ipykernel` to the
environment's requirements, and JupyterLab shows the kernel as dead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

# jsonschema checks the "iri" format with rfc3987_syntax when it is installed, whose import builds a
# parser for ~3 s; no schema Jupyter validates needs it, and a session should start in about a second.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from jupyter_server.serverapp import ServerApp  # noqa: E402
from tornado.iostream import IOStream  # noqa: E402
from traitlets.config import Config  # noqa: E402

STATE_DIR = ".jupyter"

# The kernel's launcher, as ipykernel_launcher but borrowing the server's ipykernel when it must.
KERNEL_LAUNCHER = """\
import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]  # as ipykernel_launcher: IPython puts the working directory back
import importlib.util
if importlib.util.find_spec("ipykernel") is None:
    sys.path.append({host_site!r})
try:
    from ipykernel import kernelapp
except ImportError as err:
    why = (str(err).strip().splitlines() or [type(err).__name__])[0]
    sys.exit(
        "this environment has no ipykernel: add ipykernel to the environment's requirements (the "
        f"server's, for Python {host_version}, cannot load in Python "
        f"{{sys.version_info[0]}}.{{sys.version_info[1]}}: {{why}})"
    )
kernelapp.launch_new_instance()
"""


class SessionServer(ServerApp):
    """ServerApp accepting on an inherited socket instead of binding a port of its own."""

    name = "runyard-session"
    listen_fd = -1
    session_config = Config()

    def parse_command_line(self, argv: Any = None) -> None:
        """Our settings with the priority of the command line: config files do not override them."""
        super().parse_command_line(argv)
        self.cli_config.merge(self.session_config)
        self.update_config(self.cli_config)

    def _find_http_port(self) -> None:
        self._listener = socket.socket(fileno=self.listen_fd)
        self._listener.setblocking(False)  # tornado's accept loop drains until EWOULDBLOCK
        # Nagle off on every connection (they inherit it), for good: tornado turns it back on after
        # each request, the websocket upgrade included, and a kernel's burst of small messages (status,
        # input, result, reply) then waits on the client's delayed ACKs, ~40 ms a cell. Loopback only:
        # there are no small packets worth saving.
        self._listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        IOStream.set_nodelay = lambda stream, value: None  # type: ignore[method-assign,assignment]
        self.port = self._listener.getsockname()[1]

    def _bind_http_server_tcp(self) -> bool:
        self.http_server.add_socket(self._listener)
        return True

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        # JupyterLab puts the server's token in its page; the browser signs in to the proxy instead.
        self.web_app.settings.get("page_config_data", {})["token"] = ""


def state_dirs(root: Path) -> dict[str, str]:
    """Jupyter's and IPython's directories under the session's `.jupyter`, as their env vars."""
    base = root / STATE_DIR
    return {
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_PATH": str(base / "data"),  # first, before the server's venv: our python3 kernel wins
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
    }


def write_kernel_spec(data_dir: Path, kernel_python: str) -> Path:
    """The "python3" kernel spec, running `kernel_python` (it shadows the server's own python3 spec)."""
    spec = importlib.util.find_spec("ipykernel")
    assert spec is not None and spec.origin, "the server's Python has no ipykernel"
    host_site = str(Path(spec.origin).parent.parent)
    host_version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    launcher = KERNEL_LAUNCHER.format(host_site=host_site, host_version=host_version)
    kernel = {
        "argv": [kernel_python, "-c", launcher, "-f", "{connection_file}"],
        "display_name": "Python 3 (project)",
        "language": "python",
        "metadata": {"debugger": True},
        "kernel_protocol_version": "5.5",
    }
    path = data_dir / "kernels" / "python3"
    path.mkdir(parents=True, exist_ok=True)
    (path / "kernel.json").write_text(json.dumps(kernel, indent=1))
    return path


def session_config(base_url: str, editor: str, token: str, root: Path) -> Config:
    c = Config()
    lab = editor == "jupyterlab"
    c.ServerApp.base_url = base_url
    c.ServerApp.root_dir = str(root)
    c.ServerApp.ip = "127.0.0.1"
    c.ServerApp.port_retries = 0
    c.ServerApp.open_browser = False
    c.ServerApp.allow_root = True  # the sandbox is the boundary; tests and small servers run as root
    c.ServerApp.quit_button = False  # stopping is `runyard session stop`, not a process exit
    c.ServerApp.default_url = "/lab" if lab else "/terminals"
    c.ServerApp.jpserver_extensions = {"jupyterlab": lab, "jupyter_lsp": False, "notebook_shim": False}
    c.ServerApp.terminals_enabled = True
    c.IdentityProvider.token = token
    # The trash is under the home directory, read-only in the sandbox: JupyterLab's delete deletes.
    c.FileContentsManager.delete_to_trash = False
    return c


def skip_yarn_config() -> None:
    """JupyterLab asks `node yarn config` for an npm registry when it loads (0.7 s, a subprocess), which
    only matters to building extensions, which a session never does."""
    from jupyterlab import commands

    if hasattr(commands, "_yarn_config"):
        commands._yarn_config = lambda logger: {"yarn config": {}, "npm config": {}}


def main() -> None:
    root = Path.cwd()
    env = os.environ
    token = env.pop("JUPYTER_TOKEN")  # kernels and terminals get the environment: not this
    dirs = state_dirs(root)
    env.update(dirs)
    for d in dirs.values():
        Path(d).mkdir(parents=True, exist_ok=True)
    write_kernel_spec(
        Path(dirs["JUPYTER_DATA_DIR"]), env.get("RUNYARD_SESSION_KERNEL_PYTHON") or sys.executable
    )
    editor = env.get("RUNYARD_SESSION_EDITOR", "jupyterlab")
    if editor == "jupyterlab":
        skip_yarn_config()
    SessionServer.listen_fd = int(env["RUNYARD_SESSION_LISTEN_FD"])
    SessionServer.session_config = session_config(env["RUNYARD_SESSION_BASE_URL"], editor, token, root)
    SessionServer.launch_instance(argv=[])


if __name__ == "__main__":
    main()
