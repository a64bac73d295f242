"""The `runyard` application: global options, and the commands gathered from the modules beside this one.

Built on click. A command's module is imported only when that command runs, and each imports what it needs
only then: `runyard ps` must answer in a fraction of a second (bench/cli.py measures it).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from runyard.cli.context import State
from runyard.cli.errors import RunyardGroup

COMMANDS = {
    **{name: "runyard.cli.runs" for name in ("run", "ps", "logs", "stop")},
    **{name: "runyard.cli.resources" for name in ("apply", "get", "describe", "delete")},
    **{name: "runyard.cli.tracking" for name in ("runs", "metrics")},
    "artifacts": "runyard.cli.artifacts",
    "attach": "runyard.cli.attach",
    "env": "runyard.cli.environments",
    "jobs": "runyard.cli.jobs",
    "models": "runyard.cli.models",
    "nodes": "runyard.cli.nodes",
    "session": "runyard.cli.sessions",
    **{name: "runyard.cli.kube" for name in ("crds", "manifests")},
    "operator": "runyard.cli.operator",
    **{name: "runyard.cli.admin" for name in ("projects", "tokens")},
    **{name: "runyard.cli.server" for name in ("server", "up", "down", "version")},
}  # the command's function has the command's name


class LazyGroup(RunyardGroup):
    """Imports a command's module when the command is asked for (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name)
        assert isinstance(command, click.Command), f"{module}.{cmd_name} is not a click command"
        return command


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
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
    """Run machine-learning work on a self-hosted platform: commands as runs, with snapshots and logs, and
    what they track (metrics, params, artifacts)."""
    ctx.obj = State(url=url, token=token, project=project, home=home)


def main() -> None:
    app(prog_name="runyard")
