"""`runyard jobs`: list, history, graph, trigger, suspend, resume, secret."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from runyard.cli.context import state
from runyard.cli.errors import RunyardGroup, note, parse_pairs, report
from runyard.cli.options import output_option
from runyard.cli.output import PHASE_COLOURS, Column, Doc, Output, age, echo, render, table, timestamp
from runyard.core.errors import NotFound

if TYPE_CHECKING:
    from rich.tree import Tree

    from runyard.rest import Rest

OUTCOME_COLOURS = {"Created": "green", "Skipped": "yellow", "Missed": "red"}
CONFLICT_RETRIES = 5  # suspend/resume: a job written meanwhile (its status, by the controller) is read again


@click.group(cls=RunyardGroup)
def jobs() -> None:
    """Scheduled jobs and pipelines: what fires when, what ran, and triggering one by hand."""


# -- list ------------------------------------------------------------------------------------------------


def _spec(doc: Doc) -> Doc:
    return doc.get("spec") or {}


def _status(doc: Doc) -> Doc:
    return doc.get("status") or {}


def in_zone(when: datetime | None, zone_name: str) -> str:
    """`when` as wall time in the zone (2026-03-29 03:00 CEST); in UTC if this machine does not know it."""
    if when is None:
        return "-"
    from zoneinfo import ZoneInfo

    try:
        local = when.astimezone(ZoneInfo(zone_name))
    except (ValueError, OSError, KeyError):
        local = when.astimezone(UTC)
    return local.strftime("%Y-%m-%d %H:%M %Z")


def trigger_text(doc: Doc) -> str:
    """What fires the job: its schedule, the jobs it runs after, or only a person."""
    spec = _spec(doc)
    after = spec.get("dependsOn") or []
    parts = [spec["schedule"]] if spec.get("schedule") else []
    parts += [f"after {', '.join(after)}"] if after else []
    return "; ".join(parts) or "manual"


def last_result(doc: Doc) -> str:
    last = _status(doc).get("lastRun") or {}
    if not last.get("phase"):
        return "-"
    return f"{last['phase']} {age(timestamp(last.get('finishedAt')))} ago ({last.get('name')})"


def _next(doc: Doc) -> str:
    return in_zone(timestamp(_status(doc).get("nextScheduleTime")), _spec(doc).get("timeZone") or "UTC")


LIST_COLUMNS = [
    Column("NAME", lambda d: str((d.get("metadata") or {}).get("name", ""))),
    Column("SCHEDULE", trigger_text),
    Column("TIME ZONE", lambda d: str(_spec(d).get("timeZone") or "UTC")),
    Column("NEXT FIRE", _next),
    Column(
        "LAST RESULT",
        last_result,
        colour=lambda d: PHASE_COLOURS.get((_status(d).get("lastRun") or {}).get("phase") or ""),
    ),
    Column(
        "SUSPENDED",
        lambda d: "yes" if _spec(d).get("suspend") else "no",
        colour=lambda d: "yellow" if _spec(d).get("suspend") else None,
    ),
    Column("ACTIVE", lambda d: str(len(_status(d).get("active") or []))),
]


@jobs.command("list", short_help="List the project's jobs: schedule, next fire, last result.")
@output_option("table, json or yaml.", choices=("table", "json", "yaml"))
@click.pass_context
def list_(ctx: click.Context, output: Output) -> None:
    """List the project's jobs by name: what triggers each (its schedule in its time zone, the jobs it runs
    after), when it fires next in that zone, how its last run ended, whether it is suspended, and how many
    of its runs are active."""
    rest = state(ctx).rest()
    docs = sorted(rest.list("jobs"), key=lambda d: d["metadata"]["name"])
    if output is not Output.TABLE:
        render(docs, output)
        return
    if not docs:
        note(f"no jobs in project {rest.project}; `runyard apply -f job.yaml` creates one")
        return
    echo(table(docs, LIST_COLUMNS))


# -- history ---------------------------------------------------------------------------------------------


def _phase(fire: Doc) -> str:
    if fire.get("phase"):
        return str(fire["phase"])
    return "removed" if fire.get("run") else "-"


HISTORY_COLUMNS = [
    Column("WHEN", lambda f: f"{age(timestamp(f.get('firedAt')))} ago"),
    Column("TRIGGER", lambda f: str(f.get("trigger"))),
    Column(
        "OUTCOME",
        lambda f: str(f.get("outcome")),
        colour=lambda f: OUTCOME_COLOURS.get(f.get("outcome") or ""),
    ),
    Column("RUN", lambda f: str(f.get("run") or "-")),
    Column(
        "PHASE",
        _phase,
        colour=lambda f: (
            PHASE_COLOURS.get(f.get("phase") or "") or ("bright_black" if f.get("run") else None)
        ),
    ),
    Column("FIRED AT", lambda f: str(f.get("firedAt") or "-"), wide=True),
    Column("SCHEDULED FOR", lambda f: str(f.get("scheduledAt") or "-"), wide=True),
    Column("MESSAGE", lambda f: str(f.get("message") or "")),
]


@jobs.command(short_help="Show a job's fires, newest first.")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="The newest N.")
@output_option("table, wide (fire and schedule times too), json or yaml.")
@click.pass_context
def history(ctx: click.Context, name: str, limit: int, output: Output) -> None:
    """Show the fires of job NAME, newest first: when, what triggered it (schedule, dependency, manual),
    whether a run was created or why not, the run and its phase ("removed" once the history limits or a
    user removed it)."""
    rest = state(ctx).rest()
    fires = _missing_job(rest, name, lambda: rest.job_history(name, limit))
    if output in (Output.JSON, Output.YAML):
        _dump({"items": fires}, output)
        return
    if not fires:
        note(f"job {name} has not fired yet; `runyard jobs trigger {name}` runs it now")
        return
    cols = [c for c in HISTORY_COLUMNS if output is Output.WIDE or not c.wide]
    echo(table(fires, cols, whole=output is Output.WIDE))


# -- graph -----------------------------------------------------------------------------------------------


@jobs.command(short_help="Draw the project's pipelines (dependsOn) as trees.")
@output_option("table (trees), json or yaml (nodes and edges).", choices=("table", "json", "yaml"))
@click.pass_context
def graph(ctx: click.Context, output: Output) -> None:
    """Draw the project's jobs as trees: each job that depends on none is a root, with the jobs that run
    after it beneath. A job that runs after several appears under each (drawn once, then pointed to); a
    dependency that names no job of the project is shown as missing."""
    rest = state(ctx).rest()
    docs = {d["metadata"]["name"]: d for d in rest.list("jobs")}
    pipeline = Pipeline(docs)
    if output is not Output.TABLE:
        _dump(pipeline.as_data(), output)
        return
    if not docs:
        note(f"no jobs in project {rest.project}")
        return
    from rich.console import Console

    terminal = sys.stdout.isatty()
    console = Console(
        highlight=False,
        no_color="NO_COLOR" in os.environ,
        width=None if terminal else 10_000,  # piped: never wrap a line
        soft_wrap=not terminal,
    )
    for tree in pipeline.trees():
        console.print(tree)


class Pipeline:
    """The dependsOn edges of a project's jobs, drawn as rich Trees from the jobs that depend on none."""

    def __init__(self, docs: dict[str, Doc]):
        self.docs = docs
        self.after: dict[str, list[str]] = {n: list(_spec(d).get("dependsOn") or []) for n, d in docs.items()}
        self.missing = sorted({dep for deps in self.after.values() for dep in deps if dep not in docs})
        self.children: dict[str, list[str]] = {}
        for name in sorted(docs):
            for dep in self.after[name]:
                self.children.setdefault(dep, []).append(name)

    def roots(self) -> list[str]:
        return self.missing + sorted(n for n, deps in self.after.items() if not deps)

    def trees(self) -> list[Tree]:
        from rich.tree import Tree

        drawn: set[str] = set()
        trees = []
        for root in self.roots():
            tree = Tree(self._label(root, None))
            self._grow(tree, root, drawn)
            trees.append(tree)
        for name in sorted(set(self.docs) - drawn):  # only on a cycle, which the server refuses
            tree = Tree(self._label(name, None) + " [red](on a dependsOn cycle: never fires after others)[/]")
            trees.append(tree)
        return trees

    def _grow(self, tree: Tree, name: str, drawn: set[str]) -> None:
        drawn.add(name)
        for child in self.children.get(name, []):
            if child in drawn:
                tree.add(f"[bold]{_esc(child)}[/] [bright_black]↑ drawn above[/]")
                continue
            self._grow(tree.add(self._label(child, name)), child, drawn)

    def _label(self, name: str, parent: str | None) -> str:
        if name not in self.docs:
            return f"[bold red]{_esc(name)}[/] [red](missing: no such job in the project)[/]"
        doc = self.docs[name]
        spec, status = _spec(doc), _status(doc)
        parts = [f"[bold]{_esc(name)}[/]"]
        others = [d for d in self.after[name] if d != parent]
        if others:
            parts.append(f"[bright_black]also after {_esc(', '.join(others))}[/]")
        if spec.get("schedule"):
            parts.append(f"[cyan]{_esc(spec['schedule'])} ({_esc(spec.get('timeZone') or 'UTC')})[/]")
        last = (status.get("lastRun") or {}).get("phase")
        if last:
            colour = PHASE_COLOURS.get(last, "white")
            parts.append(f"last: [{colour}]{_esc(last)}[/]")
        if status.get("active"):
            parts.append(f"[cyan]running {_esc(', '.join(status['active']))}[/]")
        if spec.get("suspend"):
            parts.append("[yellow]suspended[/]")
        return "  ".join(parts)

    def as_data(self) -> Doc:
        nodes = [
            {
                "name": name,
                "schedule": _spec(doc).get("schedule"),
                "timeZone": _spec(doc).get("timeZone") or "UTC",
                "dependsOn": self.after[name],
                "suspended": bool(_spec(doc).get("suspend")),
                "lastRun": _status(doc).get("lastRun"),
            }
            for name, doc in sorted(self.docs.items())
        ]
        edges = [{"from": dep, "to": name} for name in sorted(self.docs) for dep in self.after[name]]
        return {"nodes": nodes, "edges": edges, "missing": self.missing, "roots": self.roots()}


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# -- trigger, suspend, resume, secret --------------------------------------------------------------------


@jobs.command(short_help="Run a job now, with parameters.")
@click.argument("name")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="An environment variable of the run (over the template's env); repeatable.",
)
@click.option("--follow", "-f", is_flag=True, help="Print the run's logs until it ends (its exit status).")
@click.option("--key", help="An idempotency key: triggering again with it gives the same run, not another.")
@output_option("Print the run (json or yaml).", default=None, choices=("json", "yaml"))
@click.pass_context
def trigger(
    ctx: click.Context,
    name: str,
    params: tuple[str, ...],
    follow: bool,
    key: str | None,
    output: Output | None,
) -> None:
    """Run job NAME now, also when it is suspended; prints the run's name. Refused while a run of the job
    is active if its concurrencyPolicy is Forbid."""
    import uuid

    from runyard.cli.follow import Follower

    values = parse_pairs(params, "--param")
    rest = state(ctx).rest()
    run = _missing_job(rest, name, lambda: rest.trigger_job(name, values, key or str(uuid.uuid4())))
    run_name = run["metadata"]["name"]
    note(f"job {name} triggered: run {click.style(run_name, bold=True)}")
    if output is not None:
        render([run], output, single=True)
    else:
        sys.stdout.write(run_name + "\n")
        sys.stdout.flush()
    if follow:
        raise click.exceptions.Exit(Follower(rest, run_name).follow())


def _set_suspend(rest: Rest, name: str, suspend: bool) -> tuple[Doc, bool]:
    """Set spec.suspend (read again and retried when the controller wrote the job meanwhile):
    (the job, whether it changed)."""

    def suspended(doc: Doc | None) -> Doc | None:
        if doc is None:
            raise _no_job(rest, name)
        if bool(_spec(doc).get("suspend")) == suspend:
            return None
        return {
            **{k: doc[k] for k in ("apiVersion", "kind", "metadata")},
            "spec": {**doc["spec"], "suspend": suspend},
        }

    _, stored, outcome = rest.update("jobs", name, suspended, CONFLICT_RETRIES)
    assert stored is not None
    return stored, outcome != "unchanged"


@jobs.command(short_help="Stop a job's schedule and dependencies from firing it.")
@click.argument("name")
@click.pass_context
def suspend(ctx: click.Context, name: str) -> None:
    """Suspend job NAME: neither its schedule nor the jobs it depends on fire it until it is resumed (a
    manual trigger still runs it; runs already active go on)."""
    rest = state(ctx).rest()
    _, changed = _set_suspend(rest, name, True)
    echo(f"job/{name} {'suspended' if changed else 'was suspended already'}")


@jobs.command(short_help="Let a suspended job fire again.")
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Resume job NAME: its schedule counts from now (what it skipped while suspended is not made up)."""
    rest = state(ctx).rest()
    doc, changed = _set_suspend(rest, name, False)
    echo(f"job/{name} {'resumed' if changed else 'was not suspended'}")
    if changed and _spec(doc).get("schedule"):
        fires = rest.job_schedule(name, 1).get("fires") or []
        if fires:
            zone = _spec(doc).get("timeZone") or "UTC"
            note(f"next fire: {in_zone(timestamp(fires[0]['utc']), zone)}")


@jobs.command(short_help="Print the secret that signs a job's webhook notifications.")
@click.argument("name")
@click.pass_context
def secret(ctx: click.Context, name: str) -> None:
    """Print the secret job NAME signs its webhook notifications with, for the receiver to check the
    X-Runyard-Signature header (an HMAC-SHA256). Needs write access to the project."""
    rest = state(ctx).rest()
    doc = _missing_job(rest, name, lambda: rest.job_webhook_secret(name))
    sys.stdout.write(str(doc["secret"]) + "\n")


# -- shared ----------------------------------------------------------------------------------------------


def _missing_job(rest: Rest, name: str, call: Callable[[], Any]) -> Any:
    """`call()`, about job `name`: a NotFound is said the same way whichever route answered it."""
    try:
        return call()
    except NotFound:
        raise _no_job(rest, name) from None


def _no_job(rest: Rest, name: str) -> click.exceptions.Exit:
    """Say that job `name` is not found, and what to do; the exit to raise."""
    report(
        NotFound(f"job {name!r} not found in project {rest.project!r}"),
        hint="`runyard jobs list` lists the project's jobs; `-p PROJECT` picks another project",
    )
    return click.exceptions.Exit(1)


def _dump(data: Any, output: Output) -> None:
    import json

    from runyard.cli.output import to_yaml

    sys.stdout.write(json.dumps(data, indent=2) + "\n" if output is Output.JSON else to_yaml(data))


def next_fires_text(schedule: Doc) -> str:
    """The Next fires section of `describe job`: a line per fire, in the job's zone and in UTC; or why
    there are none."""
    fires = schedule.get("fires") or []
    if not fires:
        return f"  <none>: {schedule.get('reason') or 'no schedule'}"
    zone = schedule.get("timeZone") or "UTC"
    lines = []
    for fire in fires:
        utc = timestamp(fire["utc"])
        assert utc is not None
        lines.append(f"  {in_zone(utc, zone):<24}  {utc.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    return "\n".join(lines)
