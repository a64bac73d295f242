"""What the session controller needs of the server: where sessions keep their files, the key their Jupyter
tokens derive from, the public URL, the proxy's view of activity, and the listening sockets being handed to
session runs at their launch."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from runyard.services.session_secrets import jupyter_token
from runyard.serving.listeners import bind_listener

LOOPBACK = "127.0.0.1"


@dataclass
class SessionSupport:
    root: Path  # a session's kept directory is root/<session uid>
    key: bytes  # see services/session_secrets.py
    public_url: str  # what status.url starts with
    activity: Callable[[str], datetime | None] = lambda uid: None  # proxy traffic, per session uid
    _listeners: dict[str, socket.socket] = field(default_factory=dict)

    def directory(self, session_uid: str) -> Path:
        return self.root / session_uid

    def token(self, run_uid: str) -> str:
        return jupyter_token(self.key, run_uid)

    def listener(self, run_uid: str, port: int | None) -> socket.socket:
        """A loopback listening socket for a session run's Jupyter server, on its recorded `port` (bound
        again after a restart of the server before the launch), or on a free port."""
        sock = self._listeners.get(run_uid)
        if sock is not None:
            return sock
        sock = self._listeners[run_uid] = bind_listener(LOOPBACK, port)
        return sock

    def refile(self, key: str, run_uid: str | None) -> None:
        """File the socket bound under a provisional `key` under the run's uid (None: close it)."""
        sock = self._listeners.pop(key, None)
        if sock is not None and run_uid is not None:
            self._listeners[run_uid] = sock
        elif sock is not None:
            sock.close()

    def release(self, run_uid: str) -> None:
        """Close the server's copy once the run's process holds the socket (or will never need it)."""
        sock = self._listeners.pop(run_uid, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
