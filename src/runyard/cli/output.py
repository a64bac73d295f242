"""Rendering resources for people (aligned tables, describe) and for programs (JSON, YAML) on stdout.

Resources arrive as the server's JSON documents and tables are plain aligned text: no model parsing and no
rich on the paths of `ps` and `get`, which are the commands people run most.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import click

Doc = dict[str, Any]
MAX_CELL = 60  # characters of a table cell before it is cut (`-o wide` shows cells whole)
GAP = "   "

PHASE_COLOURS = {
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
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


def echo(text: str, err: bool = False) -> None:
    """Print a line; colours only on a terminal, and never when NO_COLOR is set."""
    click.echo(text, err=err, color=False if "NO_COLOR" in os.environ else None)


def paint(text: str, colour: str | None, bold: bool = False) -> str:
    return click.style(text, fg=colour, bold=bold) if colour or bold else text


@dataclass(frozen=True)
class Column:
    """A table column: its cell text, its colour, and the value `--sort` orders by (default: the text)."""

    header: str
    cell: Callable[[Doc], str]
    colour: Callable[[Doc], str | None] | None = None
    key: Callable[[Doc], Any] | None = None
    wide: bool = False  # shown with `-o wide` only


def render(docs: Sequence[Doc], output: Output, single: bool = False) -> None:
    """Print one resource (`single`) or a list, as a table, JSON (`{"items": [...]}`) or YAML documents."""
    if output is Output.JSON:
        data: Any = docs[0] if single else {"items": list(docs)}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif output is Output.YAML:
        sys.stdout.write(to_yaml_documents(list(docs)))
    else:
        kind = docs[0].get("kind", "") if docs else ""
        echo(table(docs, columns(kind, output is Output.WIDE), whole=output is Output.WIDE))


def render_list(docs: Sequence[Doc], output: Output, cols: Sequence[Column], empty: str) -> None:
    """A kind's own listing: `cols` as a table (the wide ones with -o wide), JSON or YAML as `render`
    does; `empty` said on stderr when there is nothing."""
    if output not in (Output.TABLE, Output.WIDE):
        render(docs, output)
    elif not docs:
        from runyard.cli.errors import note

        note(empty)
    else:
        wide = output is Output.WIDE
        echo(table(docs, [c for c in cols if wide or not c.wide], whole=wide))


def table(docs: Sequence[Doc], cols: Sequence[Column], whole: bool = False) -> str:
    """Aligned columns, three spaces apart, a bold header, no trailing spaces; long cells cut unless
    `whole`."""
    rows = [[_cell(col.cell(doc), whole) for col in cols] for doc in docs]
    widths = [max([len(col.header)] + [len(row[i]) for row in rows]) for i, col in enumerate(cols)]
    header = [col.header for col in cols]
    coloured = colours()  # else no styling at all: `get` of thousands of objects piped to a file stays fast
    lines = [_line([paint(text, None, bold=True) for text in header] if coloured else header, header, widths)]
    for doc, row in zip(docs, rows, strict=True):
        if coloured:
            cells = zip(cols, row, strict=True)
            lines.append(
                _line(
                    [paint(text, col.colour(doc) if col.colour else None) for col, text in cells], row, widths
                )
            )
        else:
            lines.append(_line(row, row, widths))
    return "\n".join(lines)


def colours() -> bool:
    """Whether stdout gets colours: a terminal, and NO_COLOR unset."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _line(painted: list[str], plain: list[str], widths: list[int]) -> str:
    """Pad by the plain text's length (colour codes take no room), and leave the last cell unpadded."""
    cells = [p + " " * (w - len(t)) for p, t, w in zip(painted[:-1], plain[:-1], widths, strict=False)]
    return GAP.join([*cells, painted[-1]]).rstrip()


def _cell(text: str, whole: bool) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return text if whole or len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def order(docs: list[Doc], kind: str, sort: str | None) -> list[Doc]:
    """Newest first, or by the column named `sort` (ages youngest first, like the newest-first default)."""
    if sort is None:
        return sorted(docs, key=_created, reverse=True)
    by = {col.header.lower(): col for col in columns(kind, wide=True)}
    col = by.get(sort.lower())
    if col is None:
        from runyard.core.errors import FieldError, Invalid

        raise Invalid(f"cannot sort by {sort!r}", [FieldError("--sort", f"expected one of {', '.join(by)}")])
    return sorted(docs, key=col.key or col.cell)


def sort_fields(kind: str | None = None) -> str:
    """The --sort values, for help texts."""
    return ", ".join(col.header.lower() for col in columns(kind or "Run", wide=True))


def to_yaml_documents(docs: list[Doc]) -> str:
    """YAML documents separated by `---`, so that `get -o yaml | apply -f -` round-trips."""
    return "---\n".join(to_yaml(doc) for doc in docs)


def to_yaml(doc: Any) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def millis(value: Any) -> datetime | None:
    """A time given as milliseconds since the epoch (MLflow's way), or as ISO 8601 text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    return timestamp(value)


MAX_FLOAT = 1.7976931348623157e308  # MLflow's stand-in for an infinity


def number(value: Any) -> str:
    """A metric value in six significant digits (1, 0.25, 1.23457e-05, nan, inf); anything else as text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if abs(value) >= MAX_FLOAT:
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def age(when: datetime | None, now: datetime | None = None) -> str:
    return "-" if when is None else duration(when, now)


def duration(start: datetime | None, end: datetime | None) -> str:
    """A short human duration like kubectl's: 45s, 3m12s, 5h4m, 2d3h; `end` None means now."""
    if start is None:
        return "-"
    seconds = max(int(((end or datetime.now(UTC)) - start).total_seconds()), 0)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            whole, rest = seconds // size, (seconds % size) // sub_size
            return f"{whole}{unit}{rest}{sub}" if rest and whole < 10 else f"{whole}{unit}"
    return f"{seconds}s"


def command_text(command: str | list[str]) -> str:
    import shlex

    return command if isinstance(command, str) else shlex.join(command)


# -- the columns of each kind --------------------------------------------------------------------------------


def _meta(doc: Doc) -> Doc:
    return doc.get("metadata") or {}


def _spec(doc: Doc) -> Doc:
    return doc.get("spec") or {}


def _status(doc: Doc) -> Doc:
    return doc.get("status") or {}


def _created(doc: Doc) -> datetime:
    return timestamp(_meta(doc).get("creationTimestamp")) or datetime.min.replace(tzinfo=UTC)


def _ran(doc: Doc) -> float:
    start, end = timestamp(_status(doc).get("startedAt")), timestamp(_status(doc).get("finishedAt"))
    return ((end or datetime.now(UTC)) - start).total_seconds() if start else -1.0


def _labels(doc: Doc) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((_meta(doc).get("labels") or {}).items())) or "-"


def _schedule(doc: Doc) -> str:
    spec = _spec(doc)
    after = spec.get("dependsOn") or []
    text = spec.get("schedule") or (f"after {', '.join(after)}" if after else "-")
    return text + (" (suspended)" if spec.get("suspend") else "")


def _exit(doc: Doc) -> str:
    code = _status(doc).get("exitCode")
    return "-" if code is None else str(code)


NAME = Column("NAME", lambda d: str(_meta(d).get("name", "")))
PHASE = Column(
    "PHASE",
    lambda d: _status(d).get("phase") or "-",
    colour=lambda d: PHASE_COLOURS.get(_status(d).get("phase") or ""),
)
AGE = Column(
    "AGE",
    lambda d: age(_created(d) if _meta(d).get("creationTimestamp") else None),
    key=lambda d: -_created(d).timestamp(),
)
REASON = Column("REASON", lambda d: _status(d).get("reason") or "-", wide=True)
LABELS = Column("LABELS", _labels, wide=True)
COMMAND = Column(
    "COMMAND",
    lambda d: (
        "(tracking only)" if _spec(d).get("trackingOnly") else command_text(_spec(d).get("command") or "")
    ),
)

_COLUMNS: dict[str, list[Column]] = {
    "Run": [
        NAME,
        PHASE,
        Column(
            "EXIT",
            _exit,
            key=lambda d: _status(d).get("exitCode") if _status(d).get("exitCode") is not None else -1,
        ),
        AGE,
        Column(
            "DURATION",
            lambda d: duration(
                timestamp(_status(d).get("startedAt")), timestamp(_status(d).get("finishedAt"))
            ),
            key=_ran,
        ),
        Column(
            "ATTEMPTS",
            lambda d: str(len(_status(d).get("attempts") or [])),
            key=lambda d: len(_status(d).get("attempts") or []),
            wide=True,
        ),
        REASON,
        LABELS,
        COMMAND,
    ],
    "Experiment": [NAME, PHASE, AGE, REASON, LABELS, COMMAND],
    "Job": [NAME, PHASE, AGE, REASON, LABELS, Column("SCHEDULE", _schedule)],
    "Model": [
        NAME,
        PHASE,
        AGE,
        REASON,
        LABELS,
        Column(
            "REPLICAS", lambda d: str(_spec(d).get("replicas", 1)), key=lambda d: _spec(d).get("replicas", 1)
        ),
    ],
    "Session": [
        NAME,
        PHASE,
        AGE,
        REASON,
        LABELS,
        Column("EDITOR", lambda d: str(_spec(d).get("editor", "jupyterlab"))),
    ],
}


def columns(kind: str, wide: bool) -> list[Column]:
    cols = _COLUMNS.get(kind, [NAME, PHASE, AGE, REASON, LABELS])
    return [col for col in cols if wide or not col.wide]


# -- describe -----------------------------------------------------------------------------------------------


def describe(doc: Doc, events: list[Doc], sections: Sequence[tuple[str, str]] = ()) -> None:
    """A kubectl-describe-like view: metadata, spec and status as YAML, the (title, text) `sections`, then
    the object's events."""
    meta = _meta(doc)
    lines = [
        f"{paint(str(doc.get('kind')), None, bold=True)} {meta.get('name')}  (project {meta.get('project')})"
    ]
    for section in ("metadata", "spec", "status"):
        if doc.get(section):
            text = to_yaml(doc[section]).rstrip()
            lines += ["", paint(f"{section.capitalize()}:", None, bold=True)]
            lines += [("  " + line).rstrip() for line in text.splitlines()]
    for title, text in sections:
        lines += ["", paint(f"{title}:", None, bold=True), text]
    lines += ["", paint("Events:", None, bold=True)]
    lines.append(events_table(events) if events else "  <none>")
    echo("\n".join(lines))


EVENT_COLUMNS = [
    Column(
        "  TYPE",
        lambda e: "  " + str(e.get("type", "")),
        colour=lambda e: "yellow" if e.get("type") == "Warning" else None,
    ),
    Column("REASON", lambda e: str(e.get("reason", ""))),
    Column("AGE", lambda e: age(timestamp(e.get("time")))),
    Column("MESSAGE", lambda e: str(e.get("message", ""))),
]


def events_table(events: list[Doc]) -> str:
    return table(sorted(events, key=lambda e: str(e.get("time", ""))), EVENT_COLUMNS)
