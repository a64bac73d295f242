"""`runyard env list|build|show|log|rm`: a project's environments, and the progress of a build."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runyard.cli.context import state
from runyard.cli.errors import fail, note, report
from runyard.cli.options import output_option
from runyard.cli.output import Column, Doc, Output, age, echo, paint, table, timestamp, to_yaml
from runyard.cli.project_files import size_text
from runyard.core.errors import NotFound, RunyardError

if TYPE_CHECKING:
    from rich.live import Live
    from rich.spinner import Spinner

    from runyard.rest import Rest

STATE_COLOURS = {"Ready": "green", "Building": "yellow", "Failed": "red", "Removed": "bright_black"}
HINT = "`runyard env list` lists the project's environments; `runyard env build` builds one"


@click.group()
def env() -> None:
    """Environments: a project's dependencies, built once and reused by its runs."""


def short_id(env_id: str) -> str:
    """sha256: and the first 12 hex digits (19 characters): unique enough to name it in commands."""
    return env_id[:19]


def _names(record: Doc) -> str:
    return ",".join(record.get("names") or []) or "-"


def _packages(record: Doc) -> str:
    return str(len(record.get("packages") or [])) if record.get("state") != "Building" else "-"


def _size(record: Doc) -> str:
    size = record.get("sizeBytes")
    return "-" if size is None else size_text(size)


def _python(record: Doc) -> str:
    return str((record.get("python") or {}).get("version") or "-")


COLUMNS = [
    Column("NAME(S)", _names),
    Column("ID", lambda r: short_id(r["id"])),
    Column("STATE", lambda r: str(r.get("state")), colour=lambda r: STATE_COLOURS.get(r.get("state") or "")),
    Column("PYTHON", _python),
    Column("PACKAGES", _packages),
    Column("SIZE", _size),
    Column("LAST USED", lambda r: age(timestamp(r.get("lastUsedAt"))) if r.get("lastUsedAt") else "-"),
]


def _dump(data: Any, output: Output) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n" if output is Output.JSON else to_yaml(data))


@env.command("list", short_help="List the project's environments.")
@output_option("table, json or yaml.", choices=("table", "json", "yaml"))
@click.pass_context
def list_(ctx: click.Context, output: Output) -> None:
    """List the environments the project named or its runs used, newest first."""
    rest = state(ctx).rest()
    records = rest.environments()
    if output is not Output.TABLE:
        _dump({"items": records}, output)
        return
    if not records:
        note(f"no environments in project {rest.project}; `runyard env build` builds one")
        return
    echo(table(records, COLUMNS))


@env.command(short_help="Build the environment of a directory's dependency files.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("--name", "-n", help="A name for it in the project (a run asks for it with environment: NAME).")
@click.option("--python", help="The Python version, e.g. 3.12 (default: .python-version, requires-python).")
@click.option("--detach", "-d", is_flag=True, help="Print its id and return while it builds.")
@click.pass_context
def build(ctx: click.Context, directory: Path, name: str | None, python: str | None, detach: bool) -> None:
    """Build the environment of DIRECTORY's dependency files (default: cwd): requirements.txt, or
    pyproject.toml with uv.lock, and .python-version. An environment built before is reused at once."""
    from runyard.rest import environment_files

    if not directory.is_dir():
        raise fail(f"{directory}: no such directory")
    files = environment_files(directory)
    if "requirements.txt" not in files and "pyproject.toml" not in files:
        raise fail(
            f"no requirements.txt or pyproject.toml in {directory}",
            hint="list the dependencies in requirements.txt (or pyproject.toml with uv.lock)",
        )
    rest = state(ctx).rest()
    record = rest.build_environment(files, name, python)
    reused = record["state"] == "Ready"
    if detach:
        note(f"building environment {record['id']}; `runyard env show {short_id(record['id'])}` shows it")
        sys.stdout.write(record["id"] + "\n")
        return
    if record["state"] == "Building":
        record = follow_build(rest, record["id"], f"building environment {record['id']}")
    raise click.exceptions.Exit(finished(record, built_now=not reused, out=True))


def follow_build(rest: Rest, env_id: str, title: str) -> Doc:
    """Show a build's progress until it ends: a spinner with the log's latest line on a terminal, else
    each line of the log, dimmed, on stderr; returns the final record."""
    with BuildProgress(title) as progress:
        return rest.follow_build(env_id, progress.line)


def finished(record: Doc, built_now: bool = True, out: bool = False) -> int:
    """Say how a build ended (its id on stdout too when `out`); the exit status: 1 when it failed."""
    if record["state"] != "Ready":
        report(RunyardError(record.get("message") or f"environment {record['id']} is {record['state']}"))
        return 1
    seconds = record.get("buildSeconds")
    took = (
        f", {seconds:.1f} s"
        if built_now and seconds is not None
        else ", built before"
        if not built_now
        else ""
    )
    packages = len(record.get("packages") or [])
    note(
        f"environment {record['id']} {paint('ready', 'green')} "
        f"(python {_python(record)}, {packages} package{'s' if packages != 1 else ''}{took})"
    )
    if out:
        sys.stdout.write(record["id"] + "\n")
    return 0


class BuildProgress:
    """A build's progress on stderr: a spinner, the title and the log's latest line on a terminal (repainted
    as each line comes, not on a timer, so a build that ends within one tick still shows its lines);
    without one, the title and then each log line, dimmed."""

    def __init__(self, title: str):
        self.title = title
        self._live: Live | None = None
        self._spinner: Spinner | None = None

    def __enter__(self) -> BuildProgress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live
            from rich.spinner import Spinner

            self._spinner = Spinner("dots", text=self.title, style="status.spinner")
            self._live = Live(
                self._spinner, console=Console(stderr=True), transient=True, refresh_per_second=12.5
            )
            self._live.start()
        else:
            note(self.title)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def line(self, text: str) -> None:
        if not text.strip():
            return
        if self._live is not None and self._spinner is not None:
            from rich.markup import escape

            self._spinner.update(text=f"{escape(self.title)} [bright_black]{escape(text.strip()[:100])}[/]")
            self._live.refresh()
        else:
            echo(paint(text, "bright_black"), err=True)


@env.command(short_help="Show an environment: its record, packages and lock.")
@click.argument("ref", metavar="REF")
@click.option("--lock", is_flag=True, help="Print only its lock (the hashed requirements it was built from).")
@output_option("table, json or yaml (the record with its lock).", choices=("table", "json", "yaml"))
@click.pass_context
def show(ctx: click.Context, ref: str, lock: bool, output: Output) -> None:
    """Show the environment REF: a name, an id (sha256:…) or a unique id prefix."""
    rest = state(ctx).rest()
    record = _get(rest, ref)
    if lock:
        if not record.get("lock"):
            raise fail(f"environment {record['id']} has no lock yet ({record['state']})", code=1)
        sys.stdout.write(record["lock"] if record["lock"].endswith("\n") else record["lock"] + "\n")
        return
    if output is not Output.TABLE:
        _dump(record, output)
        return
    echo(describe(record))


def describe(record: Doc) -> str:
    source = record.get("source") or {}
    python = record.get("python") or {}
    seconds = record.get("buildSeconds")
    fields = [
        ("Id", record["id"]),
        ("Names", _names(record)),
        ("State", paint(str(record.get("state")), STATE_COLOURS.get(record.get("state") or ""))),
        ("Message", record.get("message") or ""),
        (
            "Python",
            f"{python.get('version', '-')} ({python.get('implementation', '-')}, {python.get('path')})",
        ),
        ("Platform", record.get("platform") or "-"),
        ("Source", f"{source.get('kind', '-')}: {', '.join(source.get('files') or [])}"),
        ("Lock digest", record.get("lockDigest") or "-"),
        ("Builder", record.get("builder") or "-"),
        ("Created", record.get("createdAt") or "-"),
        ("Built", (record.get("builtAt") or "-") + (f" in {seconds:.1f} s" if seconds is not None else "")),
        ("Last used", record.get("lastUsedAt") or "-"),
        ("Size", _size(record)),
    ]
    width = max(len(label) for label, _ in fields) + 2
    lines = [
        f"{paint(label + ':', None, bold=True)}{' ' * (width - len(label) - 1)}{value}"
        for label, value in fields
        if value
    ]
    packages = record.get("packages") or []
    lines += ["", paint(f"Packages ({len(packages)}):", None, bold=True)]
    cols = [
        Column("  NAME", lambda p: "  " + str(p.get("name"))),
        Column("VERSION", lambda p: str(p.get("version"))),
    ]
    lines.append(table(packages, cols) if packages else "  <none>")
    return "\n".join(lines)


@env.command(short_help="Print an environment's build log.")
@click.argument("ref", metavar="REF")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the build ends.")
@click.pass_context
def log(ctx: click.Context, ref: str, follow: bool) -> None:
    """Print the build log of the environment REF (a name, an id or a unique id prefix)."""
    rest = state(ctx).rest()
    record = _get(rest, ref)
    for line in rest.environment_log(record["id"], follow=follow):
        sys.stdout.write(line)
    sys.stdout.flush()


@env.command(short_help="Remove an environment, or one of its names.")
@click.argument("ref", metavar="REF")
@click.pass_context
def rm(ctx: click.Context, ref: str) -> None:
    """Remove REF: a name drops only the name; an id (or unique prefix) removes the environment's files (its
    record and lock are kept, so it can be built again exactly). Refused while a run that has not ended
    uses it."""
    rest = state(ctx).rest()
    record = _get(rest, ref)
    try:
        rest.remove_environment(ref)
    except NotFound:
        raise _missing(rest, ref) from None
    if ref in (record.get("names") or []):
        note(f"name {ref} removed (environment {short_id(record['id'])} is kept)")
    else:
        note(f"environment {record['id']} removed (its record and lock are kept)")


def _get(rest: Rest, ref: str) -> Doc:
    try:
        return rest.environment(ref)
    except NotFound:
        raise _missing(rest, ref) from None


def _missing(rest: Rest, ref: str) -> click.exceptions.Exit:
    report(NotFound(f"environment {ref!r} not found in project {rest.project!r}"), hint=HINT)
    return click.exceptions.Exit(1)
