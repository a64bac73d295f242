"""The `runyard` application: global options, and the commands gathered from the modules beside this one.

Built on click, and every module here imports only what its command needs when it runs: `runyard ps` must
answer in well under a second (bench/cli.py measures it).
"""

from __future__ import annotations

from pathlib import Path

import click

from runyard.cli import admin, resources, runs, server
from runyard.cli.context import State
from runyard.cli.errors import RunyardGroup


@click.group(
    cls=RunyardGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.option("--url", help="Server URL (default: RUNYARD_API_URL, or the embedded server).")
@click.option("--token", help="API token (default: RUNYARD_TOKEN).")
@click.option("--project", "-p", help="Project (default: RUNYARD_PROJECT, or default).")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Embedded server's home (default: RUNYARD_HOME, or ~/.runyard).",
)
@click.pass_context
def app(
    ctx: click.Context, url: str | None, token: str | None, project: str | None, home: Path | None
) -> None:
    """Run machine-learning work on a self-hosted platform: commands as runs, with snapshots and logs."""
    ctx.obj = State(url=url, token=token, project=project, home=home)


for command in (
    runs.run, runs.ps, runs.logs, runs.stop,
    resources.apply, resources.get, resources.describe, resources.delete,
    admin.projects, admin.tokens,
    server.server, server.up, server.down, server.version,
):  # fmt: skip
    app.add_command(command)


def main() -> None:
    app(prog_name="runyard")
