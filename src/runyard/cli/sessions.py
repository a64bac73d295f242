"""`runyard session start|list|stop|attach|delete`: JupyterLab (or a terminal) in the project's files and
environment, reached through the server."""

from __future__ import annotations

import sys
import webbrowser
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runyard.cli.context import state
from runyard.cli.errors import RunyardGroup, fail, note
from runyard.cli.models import default_name
from runyard.cli.options import output_option
from runyard.cli.output import (
    AGE,
    NAME,
    PHASE_COLOURS,
    Column,
    Doc,
    Output,
    age,
    render,
    render_list,
    timestamp,
)
from runyard.core.errors import NotFound

if TYPE_CHECKING:
    from runyard.rest import Rest

KIND = "sessions"
COLOURS = {**PHASE_COLOURS, "Stopped": "blue", "Stopping": "yellow"}
RESTART_ANNOTATION = "runyard.dev/start-requested"  # as the server's session controller reads it


@click.group(cls=RunyardGroup)
def session() -> None:
    """Interactive sessions: JupyterLab or a terminal in the project's files and environment."""


def _status(doc: Doc) -> Doc:
    return doc.get("status") or {}


def _phase(doc: Doc) -> str:
    return _status(doc).get("phase") or ""


def _resources(doc: Doc) -> str:
    res = (doc.get("spec") or {}).get("resources") or {}
    parts = [f"{res[k]} {k}" for k in ("cpu", "memory") if res.get(k)]
    if res.get("gpu"):
        parts.append(f"{res['gpu']} gpu")
    return ", ".join(parts) or "-"


def _idle(doc: Doc) -> str:
    status = _status(doc)
    if status.get("phase") != "Running":
        return "-"
    return age(timestamp(status.get("lastActivity") or status.get("readyAt")))


LIST_COLUMNS = [
    NAME,
    Column(
        "PHASE",
        lambda d: _status(d).get("phase") or "-",
        colour=lambda d: COLOURS.get(_status(d).get("phase") or ""),
    ),
    Column("EDITOR", lambda d: (d.get("spec") or {}).get("editor") or "jupyterlab"),
    Column("RESOURCES", _resources),
    Column("IDLE", _idle),
    Column("URL", lambda d: _status(d).get("url") or "-"),
    Column("REASON", lambda d: _status(d).get("reason") or "-", wide=True),
    AGE,
]


def _get(rest: Rest, name: str) -> Doc | None:
    try:
        return rest.get(KIND, name)
    except NotFound:
        return None


@session.command(short_help="Start a session (made from the project directory when new); print its URL.")
@click.argument("name", required=False)
@click.option("--editor", type=click.Choice(["jupyterlab", "terminal"]), help="Default: jupyterlab.")
@click.option(
    "--path",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    help="Directory whose files a new session starts with (default: cwd).",
)
@click.option("--environment", metavar="ENV", help="default, system, a built environment's name or id.")
@click.option("--cpu", help="CPU cores, e.g. 2 or 500m.")
@click.option("--memory", help="Memory, e.g. 4Gi.")
@click.option("--gpu", type=int, help="Whole GPUs.")
@click.option("--idle-timeout", type=click.IntRange(1), help="Seconds unused before it is stopped (3600).")
@click.option("--open", "open_", is_flag=True, help="Open it in the browser (signed in) once it is ready.")
@click.option("--no-wait", is_flag=True, help="Return at once, without waiting until it is Running.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait until Running.")
@output_option("Print the Session (json or yaml) once it is Running.", default=None, choices=("json", "yaml"))
@click.pass_context
def start(
    ctx: click.Context,
    name: str | None,
    editor: str | None,
    path: Path,
    environment: str | None,
    cpu: str | None,
    memory: str | None,
    gpu: int | None,
    idle_timeout: int | None,
    open_: bool,
    no_wait: bool,
    timeout: float,
    output: Output | None,
) -> None:
    """Start the session NAME (default: the directory's name). A new one gets the files of --path; one that
    exists starts again with the files it kept (options given change its spec). Waits until it is Running
    and prints its URL."""
    from runyard.cli.project_files import upload
    from runyard.rest import API_VERSION

    name = name or default_name(path)
    rest = state(ctx).rest()
    changes: dict[str, Any] = {
        "editor": editor,
        "environment": environment,
        "idleTimeoutSeconds": idle_timeout,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    resources = {k: v for k, v in {"cpu": cpu, "memory": memory, "gpu": gpu}.items() if v is not None}

    def started(doc: Doc | None) -> Doc:
        spec: dict[str, Any]
        if doc is None:
            spec = {**changes, "snapshot": upload(rest, path)}
            if resources:
                spec["resources"] = resources
            metadata: dict[str, Any] = {"name": name}
        else:  # started again: the files it kept, the spec it had (with what was given changed)
            spec = {**doc["spec"], **changes, "stopped": False}
            if resources:
                spec["resources"] = {**(spec.get("resources") or {}), **resources}
            metadata = dict(doc["metadata"])
            metadata["annotations"] = {**metadata.get("annotations", {}), RESTART_ANNOTATION: _now()}
        return {"apiVersion": API_VERSION, "kind": "Session", "metadata": metadata, "spec": spec}

    doc, applied, outcome = rest.update(KIND, name, started)
    assert applied is not None
    note(f"session {click.style(name, bold=True)} {outcome if doc is None else 'starting'}")
    if not no_wait:
        ended = _status(doc or {}).get("run") if _status(doc or {}).get("phase") == "Failed" else None
        applied = wait_phase(rest, name, applied["metadata"].get("generation"), ("Running",), timeout, ended)
    if output is not None:
        render([applied], output, single=True)
        return
    url = _status(applied).get("url")
    if url:
        sys.stdout.write(f"{url}\n")
        if open_ and not no_wait:
            webbrowser.open(f"{url}?token={rest.token}" if rest.token else url)
        elif (applied.get("spec") or {}).get("editor") == "terminal":
            note(f"`runyard session attach {name}` opens its terminal here")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def wait_phase(
    rest: Rest,
    name: str,
    generation: int | None,
    want: tuple[str, ...],
    timeout: float,
    replaced: str | None = None,
) -> Doc:
    """Poll until the session has seen `generation` (and, when `replaced` names its run, has another run)
    and reached a phase in `want`, saying each change on stderr; exit 1 if it fails instead, or after
    `timeout` seconds."""
    from runyard.cli.follow import wait_until

    def line(doc: Doc) -> str:
        status = _status(doc)
        return (status.get("phase") or "Pending") + (
            f": {status['message']}" if status.get("message") else ""
        )

    def settled(doc: Doc) -> bool | None:
        status = _status(doc)
        seen = generation is None or (status.get("observedGeneration") or 0) >= generation
        seen = seen and (replaced is None or status.get("run") != replaced)
        if seen and status.get("phase") == "Failed":
            return None
        return seen and status.get("phase") in want

    return wait_until(rest, KIND, name, line, settled, COLOURS, " or ".join(want), timeout, 0.1)


@session.command("list", short_help="List the project's sessions: phase, editor, resources, idle time, URL.")
@output_option()
@click.pass_context
def list_(ctx: click.Context, output: Output) -> None:
    """List the project's sessions by name: phase, editor, resources, how long unused, URL."""
    rest = state(ctx).rest()
    docs = sorted(rest.list(KIND), key=lambda d: d["metadata"]["name"])
    render_list(docs, output, LIST_COLUMNS, f"no sessions in project {rest.project}; `runyard session start`")


@session.command(short_help="Stop a session; its files are kept for the next start.")
@click.argument("name")
@click.option("--no-wait", is_flag=True, help="Return at once, without waiting until it is Stopped.")
@click.option("--timeout", type=float, default=60, show_default=True, help="Seconds to wait until Stopped.")
@click.pass_context
def stop(ctx: click.Context, name: str, no_wait: bool, timeout: float) -> None:
    """Stop the session NAME (its kernels and terminals end; the files in its directory are kept)."""
    rest = state(ctx).rest()

    def stopped(doc: Doc | None) -> Doc:
        if doc is None:
            raise fail(f"session {name} not found in project {rest.project}", hint="`runyard session list`")
        return {
            **{k: doc[k] for k in ("apiVersion", "kind", "metadata")},
            "spec": {**doc["spec"], "stopped": True},
        }

    _, applied, _ = rest.update(KIND, name, stopped)
    assert applied is not None
    if not no_wait:
        wait_phase(rest, name, applied["metadata"].get("generation"), ("Stopped",), timeout)
    note(f"session {click.style(name, bold=True)} stopped; `runyard session start {name}` starts it again")


@session.command(short_help="Delete a session and the files it kept.")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete the session NAME: it stops, and its directory is removed."""
    rest = state(ctx).rest()
    rest.delete(KIND, name)
    note(f"session {click.style(name, bold=True)} deleted")


@session.command(short_help="A terminal in the session, here (like kubectl exec -it).")
@click.argument("name")
@click.option("--command", "-c", "command", multiple=True, help="Run this instead of a shell; repeatable.")
@click.pass_context
def attach(ctx: click.Context, name: str, command: tuple[str, ...]) -> None:
    """An interactive terminal in the running session NAME: its files, environment and sandbox."""
    from runyard.cli.attach import attach_run

    rest = state(ctx).rest()
    doc = _get(rest, name)
    status = _status(doc or {})
    if doc is None or status.get("phase") != "Running" or not status.get("run"):
        raise fail(f"session {name} is not running", hint=f"`runyard session start {name}`")
    ctx.exit(attach_run(ctx, status["run"], list(command)))
