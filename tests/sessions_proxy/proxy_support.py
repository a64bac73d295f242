"""What the proxy tests share: a kernel's execute round trip and a terminal's, over a real websocket
(jupyter_server's kernel protocol, messages made by the real jupyter_client)."""

from __future__ import annotations

import json
import time
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session as KernelSession
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from websockets.sync.client import ClientConnection

V1 = "v1.kernel.websocket.jupyter.org"
_session = KernelSession()


def execute_request(code: str) -> dict:
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}}
    return _session.msg("execute_request", content={**content, "allow_stdin": False, "stop_on_error": True})


def send_msg(ws: ClientConnection, msg: dict) -> None:
    """As JupyterLab sends it: binary v1 frames when that subprotocol was agreed, JSON text otherwise."""
    if ws.subprotocol == V1:
        parts = [json.dumps(msg[k], default=json_default).encode() for k in ("header", "parent_header")]
        parts += [json.dumps(msg[k], default=json_default).encode() for k in ("metadata", "content")]
        ws.send(serialize_msg_to_ws_v1(parts, "shell"))
    else:
        ws.send(json.dumps({**msg, "channel": "shell"}, default=json_default))


def recv_msg(ws: ClientConnection, timeout: float) -> dict:
    data = ws.recv(timeout=timeout)
    if isinstance(data, bytes):
        channel, parts = deserialize_msg_from_ws_v1(data)
        keys = ("header", "parent_header", "metadata", "content")
        return {"channel": channel, **{k: json.loads(p) for k, p in zip(keys, parts, strict=False)}}
    return json.loads(data)


def execute(ws: ClientConnection, code: str, timeout: float = 30) -> Any:
    """Run `code` in the kernel; its execute_result's text/plain, or raise with its error."""
    msg = execute_request(code)
    send_msg(ws, msg)
    deadline = time.monotonic() + timeout
    while True:
        reply = recv_msg(ws, max(0.1, deadline - time.monotonic()))
        if reply.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
            continue
        kind = reply["header"]["msg_type"]
        if kind == "execute_result":
            return reply["content"]["data"]["text/plain"]
        if kind == "error":
            raise AssertionError(f"{reply['content']['ename']}: {reply['content']['evalue']}")


def terminal_until(ws: ClientConnection, keys: str, want: str, timeout: float = 20) -> str:
    """Type `keys` into a terminal websocket; its output up to the first `want`."""
    ws.send(json.dumps(["stdin", keys]))
    out = ""
    deadline = time.monotonic() + timeout
    while want not in out:
        kind, *args = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if kind == "stdout":
            out += args[0]
    return out
