"""`runyard run`, `ps`, `logs` and `stop`: submitting a command and watching it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from runyard.cli.context import state
from runyard.cli.errors import INTERRUPTED_EXIT, parse_pairs, stderr
from runyard.cli.follow import Follower, print_line
from runyard.cli.output import Output, render

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from runyard.client import Client


def run(
    ctx: typer.Context,
    cmd: str = typer.Option(..., "--cmd", "-c", help='The command line to run, e.g. "python train.py".'),
    name: str | None = typer.Option(None, "--name", "-n", help="Name of the run (default: run-xxxxxx)."),
    path: Path = typer.Option(Path("."), "--path", help="Directory whose files the run gets (default: cwd)."),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE for the run's environment; repeatable."),
    cpu: str | None = typer.Option(None, "--cpu", help="CPU cores to reserve, e.g. 2 or 500m."),
    memory: str | None = typer.Option(None, "--memory", help="Memory to reserve, e.g. 512Mi or 4Gi."),
    gpu: int | None = typer.Option(None, "--gpu", help="Whole GPUs to reserve."),
    timeout: float | None = typer.Option(None, "--timeout", help="Stop an attempt after this many seconds."),
    retries: int = typer.Option(0, "--retries", help="Attempts after the first that may fail."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Print the run's name and return at once."),
    output: Output | None = typer.Option(None, "-o", "--output", help="Print the Experiment; implies -d."),
) -> None:
    """Run a command on the platform with the files of --path, following its logs to the end."""
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu}
    variables = parse_pairs(env, "--env")
    client = state(ctx).client()
    with UploadProgress() as progress:
        experiment = client.run(cmd, name, path, variables, resources, timeout, retries, progress=progress)
    run_name = experiment.metadata.name
    stderr.print(f"run [bold]{run_name}[/] submitted")
    if output is not None:
        render([experiment], output, single=True)
        return
    if detach:
        sys.stdout.write(run_name + "\n")
        return
    raise typer.Exit(Follower(client, run_name).follow())


class UploadProgress:
    """A progress bar on stderr for uploads over 1 MiB on a terminal; silent otherwise."""

    THRESHOLD = 1024 * 1024

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> UploadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None and total > self.THRESHOLD and stderr.is_terminal:
            self._start(total)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)

    def _start(self, total: int) -> None:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
        self._bar = Progress(*columns, console=stderr, transient=True)
        self._task = self._bar.add_task("Uploading files", total=total)
        self._bar.start()


def ps(
    ctx: typer.Context,
    output: Output = typer.Option(Output.TABLE, "-o", "--output", help="table, json or yaml."),
) -> None:
    """List the runs of the project, newest first."""
    runs = state(ctx).client().runs()
    runs.sort(key=lambda r: r.metadata.creationTimestamp or datetime.min.replace(tzinfo=UTC), reverse=True)
    render(runs, output)


def logs(
    ctx: typer.Context,
    run_name: str = typer.Argument(..., metavar="RUN", help="Name of the run."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the run ends."),
    timestamps: bool = typer.Option(False, "--timestamps", help="Prefix each line with its time."),
    output: Output = typer.Option(
        Output.TABLE,
        "-o",
        "--output",
        help="table (plain text), json (a line each) or yaml (a document each).",
    ),
) -> None:
    """Print a run's logs (stdout to stdout, stderr to stderr)."""
    client = state(ctx).client()
    if follow:
        follower = Follower(client, run_name, timestamps, may_stop=False, output=output)
        follower.follow()
        raise typer.Exit(INTERRUPTED_EXIT if follower.detached else 0)
    _print_all(client, run_name, timestamps, output)


def _print_all(client: Client, run_name: str, timestamps: bool, output: Output) -> None:
    from runyard.client import LogLine

    for item in client.logs(run_name, follow=False):
        if isinstance(item, LogLine):
            print_line(item, timestamps, output)


def stop(
    ctx: typer.Context,
    run_name: str = typer.Argument(..., metavar="RUN", help="Name of the run."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait until it has stopped."),
) -> None:
    """Stop a run (its processes get SIGTERM, then SIGKILL after the grace period)."""
    client = state(ctx).client()
    client.stop(run_name)
    stderr.print(f"run {run_name} stopping")
    if wait:
        final = client.wait(run_name)
        stderr.print(f"run {run_name} {final.status.phase}")
