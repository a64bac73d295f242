"""`runyard run`, `ps`, `logs` and `stop`: submitting a command and watching it."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runyard.cli.context import state
from runyard.cli.errors import INTERRUPTED_EXIT, fail, note, parse_pairs, report
from runyard.cli.follow import Follower, Preparation, print_line
from runyard.cli.options import LABELS, SORT, output_option
from runyard.cli.output import Output, order, render
from runyard.cli.project_files import upload
from runyard.core.errors import NotFound
from runyard.core.phases import Phase

if TYPE_CHECKING:
    from runyard.rest import Rest

PHASES = [phase.value for phase in Phase]
_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@click.command(short_help="Run a command with the files of a directory, following its logs.")
@click.option("--cmd", "-c", required=True, help='The command line to run, e.g. "python train.py".')
@click.option("--name", "-n", help="Name of the run (default: run-xxxxxx).")
@click.option(
    "--path",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Directory whose files the run gets (default: cwd).",
)
@click.option(
    "--env", "-e", multiple=True, metavar="KEY=VALUE", help="A variable of the run's environment; repeatable."
)
@click.option(
    "--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="A label of the run; repeatable."
)
@click.option(
    "--environment",
    metavar="ENV",
    help="default (the directory's requirements.txt or pyproject.toml, if any), system (the host's "
    "Python), a name from `runyard env build --name`, or an id sha256:…",
)
@click.option("--cpu", help="CPU cores to reserve, e.g. 2 or 500m.")
@click.option("--memory", help="Memory to reserve, e.g. 512Mi or 4Gi.")
@click.option("--gpu", type=int, help="Whole GPUs to reserve.")
@click.option("--timeout", type=float, help="Stop an attempt after this many seconds.")
@click.option(
    "--retries", type=int, default=0, show_default=True, help="Attempts after the first that may fail."
)
@click.option("--detach", "-d", is_flag=True, help="Print the run's name and return at once.")
@output_option(
    "Print the Experiment (json or yaml) and return at once.", default=None, choices=("json", "yaml")
)
@click.pass_context
def run(
    ctx: click.Context,
    cmd: str,
    name: str | None,
    path: Path,
    env: tuple[str, ...],
    labels: tuple[str, ...],
    environment: str | None,
    cpu: str | None,
    memory: str | None,
    gpu: int | None,
    timeout: float | None,
    retries: int,
    detach: bool,
    output: Output | None,
) -> None:
    """Run a command on the platform with the files of --path, following its logs to the end."""
    import uuid

    from runyard.rest import experiment

    variables, label_map = parse_pairs(env, "--env"), parse_pairs(labels, "--label")
    rest = state(ctx).rest()
    snapshot = upload(rest, path)
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu}
    doc = experiment(cmd, name, snapshot, variables, resources, timeout, retries, label_map, environment)
    created = rest.create(doc, str(uuid.uuid4()))
    run_name = created["metadata"]["name"]
    note(f"run {click.style(run_name, bold=True)} submitted")
    if output is not None:
        render([created], output, single=True)
        return
    if detach:
        sys.stdout.write(run_name + "\n")
        return
    preparation = Preparation(rest, run_name)
    preparation.start()
    follower = Follower(rest, run_name)
    code = follower.follow()
    preparation.finish(follower.detached)
    raise click.exceptions.Exit(code)


@click.command()
@output_option()
@click.option(
    "--phase",
    type=click.Choice(PHASES, case_sensitive=False),
    multiple=True,
    help="Only runs in this phase; repeatable.",
)
@LABELS
@click.option(
    "--limit", type=click.IntRange(min=1), help="At most this many runs (the newest, or the first by --sort)."
)
@SORT
@click.pass_context
def ps(
    ctx: click.Context,
    output: Output,
    phase: tuple[str, ...],
    selector: tuple[str, ...],
    limit: int | None,
    sort: str | None,
) -> None:
    """List the runs of the project, newest first."""
    labels = parse_pairs(selector, "-l")
    rest = state(ctx).rest()
    runs = rest.list("runs", labels or None)
    if phase:
        wanted = {p.lower() for p in phase}
        runs = [r for r in runs if str((r.get("status") or {}).get("phase", "")).lower() in wanted]
    runs = order(runs, "Run", sort)[:limit]
    if not runs and output in (Output.TABLE, Output.WIDE):
        note(f"no runs in project {rest.project}" + (" match" if phase or labels else ""))
        return
    render(runs, output)


@click.command()
@click.argument("run_name", metavar="RUN")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option("--tail", type=click.IntRange(min=0), help="Only the last N lines (then new ones, with -f).")
@click.option(
    "--since", help="Only lines after a time: a duration ago (30s, 10m, 2h, 1d) or an ISO 8601 time."
)
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@output_option(
    "table (plain text), json (an object a line) or yaml (a document a line).",
    choices=("table", "json", "yaml"),
)
@click.pass_context
def logs(
    ctx: click.Context,
    run_name: str,
    follow: bool,
    tail: int | None,
    since: str | None,
    timestamps: bool,
    output: Output,
) -> None:
    """Print a run's logs (stdout to stdout, stderr to stderr)."""
    since_time = parse_since(since) if since is not None else None
    rest = state(ctx).rest()
    try:
        if follow:
            follower = Follower(
                rest, run_name, timestamps, may_stop=False, output=output, tail=tail, since=since_time
            )
            follower.follow()
            raise click.exceptions.Exit(INTERRUPTED_EXIT if follower.detached else 0)
        _print_all(rest, run_name, timestamps, output, tail, since_time)
    except NotFound:
        raise _no_such_run(rest, run_name) from None


def _print_all(
    rest: Rest, run_name: str, timestamps: bool, output: Output, tail: int | None, since: str | None
) -> None:
    from runyard.rest import LogLine

    for item in rest.logs(run_name, follow=False, tail=tail, since=since):
        if isinstance(item, LogLine):
            print_line(item, timestamps, output)


def parse_since(value: str, now: datetime | None = None) -> str:
    """`--since` as the RFC 3339 time the server takes: `10m` is ten minutes ago; a time without a zone is
    local time."""
    match = _DURATION.match(value.strip())
    if match:
        ago = timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])
        return ((now or datetime.now(UTC)) - ago).isoformat()
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(
            f"--since {value!r}: expected a duration like 30s, 10m, 2h or 1d, or a time like 2026-01-31T14:00"
        ) from None
    return (when if when.tzinfo else when.astimezone()).astimezone(UTC).isoformat()


@click.command(short_help="Stop a run.")
@click.argument("run_name", metavar="RUN")
@click.option("--wait", "-w", is_flag=True, help="Wait until it has stopped.")
@click.pass_context
def stop(ctx: click.Context, run_name: str, wait: bool) -> None:
    """Stop a run (its processes get SIGTERM, then SIGKILL after the grace period)."""
    rest = state(ctx).rest()
    try:
        stopped = rest.stop(run_name)
    except NotFound:
        raise _no_such_run(rest, run_name) from None
    phase = (stopped.get("status") or {}).get("phase")
    if Phase(phase or "Pending").is_terminal():
        note(f"run {run_name} has already finished ({phase}); nothing to stop")
        return
    note(f"run {run_name} stopping")
    if wait:
        final = rest.wait(run_name)
        note(f"run {run_name} {final['status']['phase']}")


def _no_such_run(rest: Rest, name: str) -> click.exceptions.Exit:
    report(
        NotFound(f"run {name!r} not found in project {rest.project!r}"), hint="`runyard ps` lists the runs"
    )
    return click.exceptions.Exit(1)
