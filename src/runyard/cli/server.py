"""`runyard server`, `up`, `down` and `version`: running the server, in the foreground or embedded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from runyard.cli.context import state
from runyard.cli.errors import stderr
from runyard.core.errors import FieldError, Invalid

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

S = TypeVar("S", bound="BaseSettings")


def server(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on [env RUNYARD_SERVER_HOST, default 127.0.0.1]."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port to listen on, 0 picks a free one [env RUNYARD_SERVER_PORT, default 8765]."
    ),
    store_url: str | None = typer.Option(
        None, "--store-url", help="sqlite:///… or postgresql://… [env RUNYARD_SERVER_STORE_URL]."
    ),
    public_url: str | None = typer.Option(
        None, "--public-url", help="URL runs reach the API by [env RUNYARD_SERVER_PUBLIC_URL]."
    ),
    home: Path | None = typer.Option(
        None, "--home", help="Data directory [env RUNYARD_HOME, default ~/.runyard]."
    ),
) -> None:
    """Run the API server and controller in the foreground. Flags win over the environment."""
    from runyard.settings import ControllerSettings, ServerSettings

    flags: dict[str, Any] = {"host": host, "port": port, "store_url": store_url, "public_url": public_url}
    flags["home"] = home or state(ctx).home  # `runyard --home H server` too
    given = {name: value for name, value in flags.items() if value is not None}
    problems: list[FieldError] = []
    server_settings = _load(ServerSettings, given, problems)
    controller_settings = _load(ControllerSettings, {}, problems)
    if server_settings is None or controller_settings is None:
        raise Invalid("invalid server settings", problems)
    from runyard.server import serve

    serve(server_settings, controller_settings)


def _load(cls: type[S], flags: dict[str, Any], problems: list[FieldError]) -> S | None:
    """Settings from flags and environment; a bad value is named by the flag or variable that set it."""
    from pydantic import ValidationError

    from runyard.settings import env_name

    try:
        return cls(**flags)
    except ValidationError as err:
        for e in err.errors():
            name = str(e["loc"][0]) if e["loc"] else ""
            shown = f"--{name.replace('_', '-')}" if name in flags else env_name(cls, name)
            problems.append(FieldError(shown, f"{e['msg']} (got {e['input']!r})"))
        return None


def up(ctx: typer.Context) -> None:
    """Start the embedded server in the background (if it is not running) and print its URL."""
    from runyard.embedded import ensure_server

    home = state(ctx).home_dir()
    url, _token = ensure_server(home)
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    stderr.print(f"runyard server running at {url} (data in {home})", markup=False)
    stderr.print('Next: runyard run --cmd "python train.py"', markup=False)


def down(ctx: typer.Context) -> None:
    """Stop the embedded server started by `up` or by any command."""
    from runyard.embedded import stop_server

    pid = stop_server(state(ctx).home_dir())
    stderr.print(f"stopped the runyard server (pid {pid})" if pid else "no runyard server is running")


def version() -> None:
    """Print the version of this client."""
    from runyard import __version__

    sys.stdout.write(f"runyard {__version__}\n")
