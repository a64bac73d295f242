"""The `runyard` application: global options, and the commands gathered from the modules beside this one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from runyard.cli import resources, runs, server
from runyard.cli.context import State
from runyard.cli.errors import RunyardGroup

app = typer.Typer(
    cls=RunyardGroup,
    name="runyard",
    help="Run, track, schedule and serve machine-learning work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="Server URL (default: RUNYARD_API_URL, or embedded)."),
    token: str | None = typer.Option(None, "--token", help="API token (default: RUNYARD_TOKEN)."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project (default: RUNYARD_PROJECT)."),
    home: Path | None = typer.Option(None, "--home", help="Embedded server's home (default: ~/.runyard)."),
) -> None:
    ctx.obj = State(url=url, token=token, project=project, home=home)


COMMANDS: list[Callable[..., None]] = [
    runs.run, runs.ps, runs.logs, runs.stop,
    resources.apply, resources.get, resources.describe, resources.delete,
    server.server, server.up, server.down, server.version,
]  # fmt: skip
for command in COMMANDS:
    app.command()(command)


def main() -> None:
    app(prog_name="runyard")
