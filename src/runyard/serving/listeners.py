"""A model's listening socket: bound with SO_REUSEADDR and SO_REUSEPORT so that a server restarted after a
crash binds the model's recorded port again while the replicas it left running still hold the old socket."""

from __future__ import annotations

import socket

BACKLOG = 4096  # connections that wait while no replica accepts (scale to zero, a restart)


def bind_listener(host: str, port: int | None) -> socket.socket:
    """A listening TCP socket on `port`, or on any free port when None or when `port` cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for want in ([port] if port else []) + [0]:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, want))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            if want == 0:
                raise
            continue
        return sock
    raise AssertionError("unreachable")


def has_waiting(sockets: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Those of `sockets` with a connection waiting to be accepted, within `timeout` seconds."""
    import select

    if not sockets:
        return []
    try:
        readable, _, _ = select.select(sockets, [], [], timeout)
    except (OSError, ValueError):  # one was closed meanwhile: the next round sees the new set
        return []
    return readable
