"""`runyard server`, `up`, `down` and `version`: running the server, in the foreground or embedded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from runyard.cli.context import state
from runyard.cli.errors import note
from runyard.core.errors import FieldError, Invalid

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

S = TypeVar("S", bound="BaseSettings")


@click.command(
    epilog="By environment only: RUNYARD_SERVER_MAX_BLOB_BYTES, RUNYARD_SERVER_MAX_ARTIFACT_BYTES, "
    "RUNYARD_SERVER_KUBE_CONTEXT, "
    "RUNYARD_CONTROLLER_TICK_SECONDS, "
    "RUNYARD_CONTROLLER_MAX_RUNNING_RUNS, RUNYARD_CONTROLLER_LAUNCH_TIMEOUT_SECONDS; the node, its sandbox "
    "and environments: RUNYARD_RUNTIME_SANDBOX, RUNYARD_RUNTIME_NODE_CPU, RUNYARD_RUNTIME_NODE_MEMORY, "
    "RUNYARD_RUNTIME_NODE_GPUS, RUNYARD_RUNTIME_SIMULATED_GPUS, RUNYARD_RUNTIME_DEFAULT_PIDS, "
    "RUNYARD_RUNTIME_PYTHONS, RUNYARD_RUNTIME_ENV_RETENTION_SECONDS; job notifications: "
    "RUNYARD_NOTIFY_SMTP_HOST, RUNYARD_NOTIFY_SMTP_PORT, RUNYARD_NOTIFY_SMTP_SECURITY, "
    "RUNYARD_NOTIFY_SMTP_USERNAME, RUNYARD_NOTIFY_SMTP_PASSWORD, RUNYARD_NOTIFY_SMTP_FROM, "
    "RUNYARD_NOTIFY_TIMEOUT_SECONDS, RUNYARD_NOTIFY_MAX_ATTEMPTS, RUNYARD_NOTIFY_BACKOFF_SECONDS "
    "(see the README's Configuration)."
)
@click.option("--host", help="Address to listen on [env RUNYARD_SERVER_HOST, default 127.0.0.1].")
@click.option(
    "--port", type=int, help="Port to listen on, 0 picks a free one [env RUNYARD_SERVER_PORT, default 8765]."
)
@click.option("--store-url", help="sqlite:///… or postgresql://… [env RUNYARD_SERVER_STORE_URL].")
@click.option("--public-url", help="URL runs reach the API by [env RUNYARD_SERVER_PUBLIC_URL].")
@click.option(
    "--artifact-root",
    help="Directory or fsspec URL for run artifacts "
    "[env RUNYARD_SERVER_ARTIFACT_ROOT, default HOME/artifacts].",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory [env RUNYARD_HOME, default ~/.runyard].",
)
@click.option(
    "--kubernetes",
    is_flag=True,
    default=None,
    help="Keep the kinds as custom resources in the cluster of the kubeconfig (or the pod's) "
    "[env RUNYARD_SERVER_KUBERNETES].",
)
@click.option("--kubeconfig", help="With --kubernetes: the kubeconfig file [env RUNYARD_SERVER_KUBECONFIG].")
@click.pass_context
def server(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    store_url: str | None,
    public_url: str | None,
    artifact_root: str | None,
    home: Path | None,
    kubernetes: bool | None,
    kubeconfig: str | None,
) -> None:
    """Run the API server and controller in the foreground. Flags win over the environment."""
    from runyard.settings import ControllerSettings, NotifySettings, RuntimeSettings, ServerSettings

    flags: dict[str, Any] = {"host": host, "port": port, "store_url": store_url, "public_url": public_url}
    flags.update(artifact_root=artifact_root, kubernetes=kubernetes, kubeconfig=kubeconfig)
    flags["home"] = home or state(ctx).home  # `runyard --home H server` too
    given = {name: value for name, value in flags.items() if value is not None}
    problems: list[FieldError] = []
    server_settings = _load(ServerSettings, given, problems)
    controller_settings = _load(ControllerSettings, {}, problems)
    runtime_settings = _load(RuntimeSettings, {}, problems)
    notify_ok = _load(NotifySettings, {}, problems) is not None  # checked here; the server reads it again
    if server_settings is None or controller_settings is None or runtime_settings is None or not notify_ok:
        raise Invalid("invalid server settings", problems)
    from runyard.server import serve

    serve(server_settings, controller_settings, runtime_settings)


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


@click.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start the embedded server in the background (if it is not running) and print its URL."""
    from runyard.embedded import ensure_server

    home = state(ctx).home_dir()
    url, _token = ensure_server(home)
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    note(f"runyard server running at {url} (data in {home})")
    note('Next: runyard run --cmd "python train.py"')


@click.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the embedded server started by `up` or by any command."""
    from runyard.embedded import stop_server

    pid = stop_server(state(ctx).home_dir())
    note(f"stopped the runyard server (pid {pid})" if pid else "no runyard server is running")


@click.command()
def version() -> None:
    """Print the version of this client."""
    from runyard import __version__

    sys.stdout.write(f"runyard {__version__}\n")
