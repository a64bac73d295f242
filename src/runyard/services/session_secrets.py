"""The secret a session's Jupyter server accepts: derived from a key only the server holds, so it is never
stored (not in the Run's spec, not in any status) and the proxy can recompute it for whichever run it
forwards to, after a restart too."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "session.key"


def load_key(home: Path) -> bytes:
    """The server's session key (HOME/session.key, made once, readable by the server's user only)."""
    path = home / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # the first server to make it wins; the others read that one
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def jupyter_token(key: bytes, run_uid: str) -> str:
    """The token the session run's Jupyter server is started with (its JUPYTER_TOKEN)."""
    return hmac.new(key, f"jupyter:{run_uid}".encode(), hashlib.sha256).hexdigest()
