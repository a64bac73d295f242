"""`runyard server`, `up`, `down` and `version`: running the server, in the foreground or embedded."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from runyard.cli.context import state
from runyard.cli.errors import stderr


def server(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on; 0 picks a free one."),
    store_url: str | None = typer.Option(None, "--store-url", help="sqlite:///… or postgresql://…"),
    home: Path | None = typer.Option(None, "--home", help="Data directory (default: ~/.runyard)."),
) -> None:
    """Run the API server and controller in the foreground."""
    from runyard.server import serve
    from runyard.settings import ServerSettings

    chosen_home = home or state(ctx).home
    settings = ServerSettings(host=host, port=port, store_url=store_url)
    if chosen_home is not None:
        settings.home = chosen_home.expanduser()
    serve(settings)


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
