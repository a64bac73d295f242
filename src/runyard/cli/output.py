"""Rendering resources for people (rich tables, describe) and for programs (JSON, YAML) on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from runyard.core.resources import Event, Resource

PHASE_STYLES = {
    "Succeeded": "green",
    "Running": "cyan",
    "Starting": "cyan",
    "Pending": "yellow",
    "Queued": "yellow",
    "Failed": "red",
    "Cancelled": "magenta",
}


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def stdout() -> Console:
    # Piped output keeps whole lines: a table cut at 80 columns is no use to grep.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def render(resources: Sequence[Resource], output: Output, single: bool = False) -> None:
    """Print one resource (`single`) or a list, as a table, JSON (`{"items": [...]}`) or YAML documents."""
    docs = [r.model_dump(mode="json", exclude_none=True) for r in resources]
    if output is Output.JSON:
        data: Any = docs[0] if single else {"items": docs}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif output is Output.YAML:
        sys.stdout.write(to_yaml_documents(docs))
    else:
        stdout().print(table(resources))


def to_yaml_documents(docs: list[dict]) -> str:
    """YAML documents separated by `---`, so that `get -o yaml | apply -f -` round-trips."""
    return "---\n".join(to_yaml(doc) for doc in docs)


def to_yaml(doc: Any) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def table(resources: Sequence[Resource]) -> Table:
    kind = resources[0].kind if resources else ""
    columns, row = _COLUMNS.get(kind, (("NAME", "PHASE", "AGE"), _workload_row))
    grid = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for resource in resources:
        grid.add_row(*row(resource))
    return grid


def phase_text(phase: str | None) -> Text:
    return Text(phase or "-", style=PHASE_STYLES.get(phase or "", ""))


def age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    return duration(when, now or datetime.now(UTC))


def duration(start: datetime | None, end: datetime | None) -> str:
    """A short human duration like kubectl's: 45s, 3m12s, 5h4m, 2d3h; `end` None means now."""
    if start is None:
        return "-"
    seconds = max(int((_aware(end or datetime.now(UTC)) - _aware(start)).total_seconds()), 0)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            whole, rest = seconds // size, (seconds % size) // sub_size
            return f"{whole}{unit}{rest}{sub}" if rest and whole < 10 else f"{whole}{unit}"
    return f"{seconds}s"


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def command_text(command: str | list[str]) -> str:
    import shlex

    return command if isinstance(command, str) else shlex.join(command)


def _workload_row(r: Any) -> list[Any]:
    return [r.metadata.name, phase_text(r.status.phase), age(r.metadata.creationTimestamp)]


def _run_row(r: Any) -> list[Any]:
    status = r.status
    exit_code = "-" if status.exitCode is None else str(status.exitCode)
    ran = duration(status.startedAt, status.finishedAt) if status.startedAt else "-"
    created = age(r.metadata.creationTimestamp)
    return [r.metadata.name, phase_text(status.phase), exit_code, created, ran, command_text(r.spec.command)]


def _experiment_row(r: Any) -> list[Any]:
    return [*_workload_row(r), command_text(r.spec.command)]


def _job_row(r: Any) -> list[Any]:
    schedule = r.spec.schedule or (f"after {', '.join(r.spec.dependsOn)}" if r.spec.dependsOn else "-")
    return [*_workload_row(r), schedule + (" (suspended)" if r.spec.suspend else "")]


def _model_row(r: Any) -> list[Any]:
    return [*_workload_row(r), str(r.spec.replicas)]


def _session_row(r: Any) -> list[Any]:
    return [*_workload_row(r), r.spec.editor]


_COLUMNS: dict[str, tuple[tuple[str, ...], Any]] = {
    "Run": (("NAME", "PHASE", "EXIT", "AGE", "DURATION", "COMMAND"), _run_row),
    "Experiment": (("NAME", "PHASE", "AGE", "COMMAND"), _experiment_row),
    "Job": (("NAME", "PHASE", "AGE", "SCHEDULE"), _job_row),
    "Model": (("NAME", "PHASE", "AGE", "REPLICAS"), _model_row),
    "Session": (("NAME", "PHASE", "AGE", "EDITOR"), _session_row),
}


def describe(resource: Resource, events: list[Event]) -> None:
    """A kubectl-describe-like view: metadata, spec and status as YAML, then the object's events."""
    import yaml

    console = stdout()
    doc = resource.model_dump(mode="json", exclude_none=True)
    console.print(f"[bold]{resource.kind}[/] {resource.metadata.name}  (project {resource.metadata.project})")
    for section in ("metadata", "spec", "status"):
        if doc.get(section):
            console.print(f"\n[bold]{section.capitalize()}:[/]")
            text = yaml.safe_dump(doc[section], sort_keys=False).rstrip()
            console.print(Text("\n".join("  " + line for line in text.splitlines())))
    console.print("\n[bold]Events:[/]")
    console.print(events_table(events) if events else Text("  <none>"))


def events_table(events: list[Event]) -> Table:
    grid = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("  TYPE", "REASON", "AGE", "MESSAGE"):
        grid.add_column(column, overflow="fold")
    for event in sorted(events, key=lambda e: e.time):
        style = "yellow" if event.type == "Warning" else ""
        grid.add_row(Text("  " + event.type, style=style), event.reason, age(event.time), event.message)
    return grid
