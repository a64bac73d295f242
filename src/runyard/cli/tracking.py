"""`runyard runs list|compare` and `runyard metrics`: what runs tracked (params, metrics), searched, side by
side, and charted; and the tracking sections of `runyard describe run`."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from runyard.cli.context import state
from runyard.cli.errors import fail, note, report
from runyard.cli.options import output_option
from runyard.cli.output import (
    MAX_FLOAT,
    PHASE_COLOURS,
    Column,
    Doc,
    Output,
    age,
    colours,
    echo,
    millis,
    number,
    paint,
    render,
    table,
    to_yaml,
)
from runyard.core.errors import Invalid, NotFound

if TYPE_CHECKING:
    from runyard.rest import Rest

# A params/metrics/tags key named in an MLflow filter or order: `params.lr`, metrics.`val loss`, tag."x".
_KEY = re.compile(r"(?<![\w.])(params?|metrics?|tags?)\.(`[^`]+`|\"[^\"]+\"|[\w./:-]*\w)")
_SORT = re.compile(r"^(params?|metrics?|tags?|attributes?|attr|run)\.(.+)$")
_SECTIONS = {"param": "params", "metric": "metrics", "tag": "tags"}
_SHORTCUTS = {"name": ("attributes.run_name", False), "age": ("attributes.start_time", True)}
DEFAULT_METRICS = 4  # metric columns of `runs list` when neither --filter nor --sort names any
SORT_HELP = (
    "metrics.KEY, params.KEY, tags.KEY, attributes.NAME (start_time, end_time, run_name, status), name or "
    "age; a leading - reverses (-metrics.acc: highest first). Default: newest first."
)


@click.group(short_help="Search and compare runs by what they tracked.")
def runs() -> None:
    """Runs with the params, metrics and tags they tracked: search them, compare them."""


@runs.command("list", short_help="Runs with their params and metrics, filtered and sorted.")
@click.option("--experiment", "-e", metavar="NAME", help="Only the runs of this MLflow experiment.")
@click.option(
    "--filter",
    "filter_",
    metavar="EXPR",
    help='MLflow\'s filter syntax, e.g. "params.lr > 0.01 and metrics.loss < 0.5" (a param compared with a '
    "number compares as one), \"tags.team = 'cv'\".",
)
@click.option("--sort", metavar="FIELD", help=SORT_HELP)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many runs.")
@output_option("table, wide (every param and metric, cells whole), json or yaml.")
@click.pass_context
def list_runs(
    ctx: click.Context,
    experiment: str | None,
    filter_: str | None,
    sort: str | None,
    limit: int | None,
    output: Output,
) -> None:
    """List the project's runs with phase, experiment, age and the params and metrics that matter: those
    --filter and --sort name (every one with -o wide)."""
    order = order_by(sort) if sort else None
    rest = state(ctx).rest()
    try:
        found = rest.search_runs(filter_, order, experiment, limit)
    except NotFound as err:
        if experiment is None:
            raise
        names = ", ".join(sorted(e["name"] for e in rest.experiments())) or "none"
        report(err, hint=f"the experiments of project {rest.project}: {names}")
        raise click.exceptions.Exit(1) from None
    if output in (Output.JSON, Output.YAML):
        render(found, output)
        return
    if not found:
        scope = f" of experiment {experiment}" if experiment else ""
        note(f"no runs{scope} in project {rest.project}" + (" match" if filter_ else ""))
        return
    keys = shown_keys(found, " ".join(filter(None, [filter_, order])), wide=output is Output.WIDE)
    echo(table(found, run_columns(keys, output is Output.WIDE), whole=output is Output.WIDE))


def order_by(sort: str) -> str:
    """--sort as MLflow's order_by: `metrics.loss` -> "metrics.loss ASC", `-metrics.val loss` ->
    "metrics.`val loss` DESC"; `name` and `age` (youngest first) as in `runyard ps`."""
    descending = sort.startswith("-")
    field = sort[1:] if descending else sort
    if field in _SHORTCUTS:
        field, reverse = _SHORTCUTS[field]
        descending = descending != reverse
    match = _SORT.match(field)
    if not match:
        raise fail(f"--sort {sort!r}: expected {SORT_HELP}")
    section, key = match.groups()
    if not re.fullmatch(r"\w+|`[^`]+`|\"[^\"]+\"", key):
        key = f"`{key}`"
    return f"{section}.{key} {'DESC' if descending else 'ASC'}"


def named_keys(expression: str) -> list[tuple[str, str]]:
    """The (params|metrics|tags, key) an MLflow filter or order names, in order, each once."""
    keys = []
    for section, key in _KEY.findall(expression):
        item = (_SECTIONS.get(section, section), key.strip('`"'))
        if item not in keys:
            keys.append(item)
    return keys


def shown_keys(found: list[Doc], expression: str, wide: bool) -> list[tuple[str, str]]:
    """The params and metrics to show as columns: those the filter and order name, else the metrics most
    runs have (at most DEFAULT_METRICS); with `wide`, every param and metric after those."""
    keys = named_keys(expression)
    if wide:
        for section in ("params", "metrics"):
            every = sorted({key for doc in found for key in doc.get(section) or {}})
            keys += [(section, key) for key in every if (section, key) not in keys]
    elif not keys:
        counts = Counter(key for doc in found for key in doc.get("metrics") or {})
        common = sorted(counts, key=lambda key: (-counts[key], key))[:DEFAULT_METRICS]
        keys = [("metrics", key) for key in sorted(common)]
    return keys


def run_columns(keys: list[tuple[str, str]], wide: bool) -> list[Column]:
    cols = [
        Column("NAME", lambda d: str(d.get("name", ""))),
        Column(
            "PHASE", lambda d: d.get("phase") or "-", colour=lambda d: PHASE_COLOURS.get(d.get("phase", ""))
        ),
        Column("EXPERIMENT", lambda d: str(d.get("experiment") or "-")),
        Column("AGE", lambda d: age(millis(d.get("startTime")))),
    ]
    if wide:
        cols.append(Column("ID", lambda d: str(d.get("runId", ""))))
    return cols + [Column(f"{section}.{key}", _value(section, key)) for section, key in keys]


def _value(section: str, key: str) -> Callable[[Doc], str]:
    """The cell of one param or metric of a run."""
    return lambda doc: number((doc.get(section) or {}).get(key))


@runs.command(short_help="Params and metrics of runs side by side, differences highlighted.")
@click.argument("names", metavar="RUN RUN...", nargs=-1, required=True)
@click.option("--only-diff", is_flag=True, help="Only the rows whose values differ.")
@output_option("table, wide (tags too, cells whole), json or yaml.")
@click.pass_context
def compare(ctx: click.Context, names: tuple[str, ...], only_diff: bool, output: Output) -> None:
    """Params and latest metrics of two runs or more side by side; the rows whose values differ are
    highlighted (marked * in a DIFF column when the output is no terminal)."""
    names = tuple(dict.fromkeys(names))
    if len(names) < 2:
        raise fail("compare needs two runs or more", hint="`runyard runs list` lists the runs")
    rest = state(ctx).rest()
    tracked = [tracked_run(rest, name) for name in names]
    rows = comparison(tracked, tags=output is Output.WIDE or output in (Output.JSON, Output.YAML))
    if output in (Output.JSON, Output.YAML):
        doc = {
            "runs": [{"name": name, **data} for name, data in zip(names, tracked, strict=True)],
            "differences": [row["key"] for row in rows if row["differs"]],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n" if output is Output.JSON else to_yaml(doc))
        return
    if only_diff:
        rows = [row for row in rows if row["differs"]]
        if not rows:
            note(f"the runs {', '.join(names)} tracked the same params and metrics")
            return
    echo(table(rows, compare_columns(names, marker=not colours()), whole=output is Output.WIDE))


def tracked_run(rest: Rest, name: str) -> Doc:
    try:
        return rest.tracking(name)
    except NotFound:
        report(
            NotFound(f"run {name!r} not found in project {rest.project!r}"),
            hint="`runyard runs list` lists the runs",
        )
        raise click.exceptions.Exit(1) from None


def comparison(tracked: list[Doc], tags: bool) -> list[Doc]:
    """Rows {key, values (one per run), differs}: experiment and status, then each param and metric (and
    tag) any of the runs has, by name; a value a run lacks is "-"."""
    rows = [
        _row("experiment", [str((d.get("experiment") or {}).get("name", "-")) for d in tracked]),
        _row("status", [str(d.get("status") or "-") for d in tracked]),
    ]
    for section in ("params", "metrics", *(["tags"] if tags else [])):
        for key in sorted({key for d in tracked for key in d.get(section) or {}}):
            values = [(d.get(section) or {}).get(key) for d in tracked]
            cells = [
                "-" if v is None else number(v["value"]) if section == "metrics" else str(v) for v in values
            ]
            rows.append(_row(f"{section}.{key}", cells))
    return rows


def _row(key: str, values: list[str]) -> Doc:
    return {"key": key, "values": values, "differs": len(set(values)) > 1}


def compare_columns(names: tuple[str, ...], marker: bool) -> list[Column]:
    def changed(row: Doc) -> str | None:
        return "yellow" if row["differs"] else None

    cols = [Column("DIFF", lambda r: "*" if r["differs"] else "")] if marker else []
    cols.append(Column("KEY", lambda r: r["key"], colour=changed))
    return cols + [Column(name, _nth(i), colour=changed) for i, name in enumerate(names)]


def _nth(index: int) -> Callable[[Doc], str]:
    return lambda row: str(row["values"][index])


# -- metrics ------------------------------------------------------------------------------------------------


@click.command(short_help="A run's tracked metrics, or the chart of one metric's history.")
@click.argument("run_name", metavar="RUN")
@click.argument("key", required=False)
@output_option("table (a chart with KEY), wide (with the time; every point with KEY), json or yaml.")
@click.pass_context
def metrics(ctx: click.Context, run_name: str, key: str | None, output: Output) -> None:
    """The latest value of each metric RUN tracked; with KEY, a chart of that metric's history with its
    lowest, highest and last value (-o json gives every point)."""
    rest = state(ctx).rest()
    try:
        if key is None:
            _latest(rest, run_name, output)
        else:
            _history(rest, run_name, key, output)
    except NotFound:
        tracked_run(rest, run_name)  # exits if the run is missing
        if key is None:
            raise
        raise _no_such_metric(run_name, key) from None


def _latest(rest: Rest, run_name: str, output: Output) -> None:
    latest = rest.metrics(run_name)
    if output in (Output.JSON, Output.YAML):
        doc = {"metrics": latest}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n" if output is Output.JSON else to_yaml(doc))
        return
    if not latest:
        note(f"run {run_name} has tracked no metrics")
        note(
            paint(
                "hint: runyard.log_metric(...) or mlflow.log_metric(...) in the run tracks some",
                "bright_black",
            )
        )
        return
    echo(table(sorted(latest, key=lambda m: m["key"]), metric_columns(output is Output.WIDE)))


def metric_columns(wide: bool) -> list[Column]:
    cols = [
        Column("KEY", lambda m: str(m["key"])),
        Column("VALUE", lambda m: number(m.get("value"))),
        Column("STEP", lambda m: str(m.get("step", 0))),
        Column("AGE", lambda m: age(millis(m.get("timestamp")))),
    ]
    if wide:
        cols.append(Column("TIME", lambda m: _iso(m.get("timestamp"))))
    return cols


def _iso(value: Any) -> str:
    when = millis(value)
    return when.isoformat(timespec="milliseconds") if when else "-"


def _history(rest: Rest, run_name: str, key: str, output: Output) -> None:
    points = rest.metric_history(run_name, key)
    if not points:
        raise _no_such_metric(run_name, key)
    if output in (Output.JSON, Output.YAML):
        doc = {"key": key, "history": points}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n" if output is Output.JSON else to_yaml(doc))
        return
    echo(history_view(key, points))
    if output is Output.WIDE:
        point_cols = [
            Column("STEP", lambda p: str(p.get("step", 0))),
            Column("VALUE", lambda p: number(p.get("value"))),
            Column("TIME", lambda p: _iso(p.get("timestamp"))),
        ]
        echo("\n" + table(points, point_cols))


def history_view(key: str, points: list[Doc]) -> str:
    """The chart of a metric's points (by step, or by order when every step is the same) and a line with
    their count, lowest, highest and last value; NaN and infinite values are counted, not drawn."""
    import shutil

    from runyard.cli.chart import chart

    steps = [p.get("step", 0) for p in points]
    values = [p["value"] for p in points]
    kept = _drawable(values)
    ys = values if len(kept) == len(values) else [values[i] for i in kept]
    by_step = len(set(steps)) > 1
    lines = []
    if kept:
        size = shutil.get_terminal_size((80, 24))
        height = max(6, min(15, size.lines - 6))
        xs = (steps if len(kept) == len(values) else [steps[i] for i in kept]) if by_step else kept
        x_name = "step" if by_step else "point"
        text = chart(xs, ys, min(size.columns, 120), height, lambda v: f"{v:.4g}", x_name)
        lines.append(paint(text, "cyan") if colours() else text)
    title = paint(key, None, bold=True) if colours() else key
    parts = [f"{title}: {len(points)} point{'s' if len(points) != 1 else ''}"]
    if kept:
        low, high = kept[ys.index(min(ys))], kept[ys.index(max(ys))]
        parts += [f"min {_at(points[low])}", f"max {_at(points[high])}"]
    parts.append(f"last {_at(points[-1])}")
    if len(kept) < len(points):
        parts.append(f"{len(points) - len(kept)} NaN or infinite not drawn")
    lines.append(" · ".join(parts))
    return "\n".join(lines)


def _drawable(values: list[Any]) -> Sequence[int]:
    """The indexes of the finite values (not NaN, not an infinity nor MLflow's stand-in for one). Checked
    at C speed first: a sum is finite only when every value is."""
    import math

    try:
        if math.isfinite(sum(values)) and min(values) > -MAX_FLOAT and max(values) < MAX_FLOAT:
            return range(len(values))
    except (TypeError, ValueError):  # a value that is no number; no values
        pass
    return [i for i, v in enumerate(values) if type(v) in (float, int) and -MAX_FLOAT < v < MAX_FLOAT]


def _at(point: Doc) -> str:
    return f"{number(point['value'])} (step {point.get('step', 0)})"


def _no_such_metric(run_name: str, key: str) -> click.exceptions.Exit:
    report(
        NotFound(f"run {run_name!r} has no metric {key!r}"),
        hint=f"`runyard metrics {run_name}` lists its metrics",
    )
    return click.exceptions.Exit(1)


# -- describe run -------------------------------------------------------------------------------------------


def tracked_data(rest: Rest, name: str) -> Doc:
    """What `describe run` adds: {"tracking": the run's params, tags and latest metrics, "artifacts": the
    entries at the top of its artifacts (None when kept outside the server's artifact store)}; nothing from
    a server without tracking (the run itself exists)."""
    try:
        tracking = rest.tracking(name)
    except NotFound:
        return {}
    try:
        files: list[Doc] | None = rest.artifacts(name)["files"]
    except NotFound:
        files = []
    except Invalid:  # an artifact_location elsewhere, which MLflow's clients write to themselves
        files = None
    return {"tracking": tracking, "artifacts": files}


def tracked_sections(tracked: Doc) -> list[tuple[str, str]]:
    """The Params, Metrics and Artifacts sections of `describe run`, each a table indented by two."""
    from runyard.cli.artifacts import files_table

    data = tracked["tracking"]
    params = [{"key": k, "value": v} for k, v in sorted((data.get("params") or {}).items())]
    latest = [{"key": k, **point} for k, point in sorted((data.get("metrics") or {}).items())]
    param_cols = [Column("  KEY", lambda p: "  " + p["key"]), Column("VALUE", lambda p: str(p["value"]))]
    metric_cols = metric_columns(wide=False)
    metric_cols[0] = Column("  KEY", lambda m: "  " + m["key"])
    none = "  <none>"
    files = tracked["artifacts"]
    artifacts = none if files == [] else files_table(files, indent="  ") if files else "  <kept elsewhere>"
    experiment = data.get("experiment") or {}
    summary = [
        f"  MLflow run id: {data.get('runId', '-')}",
        f"  Experiment:    {experiment.get('name', '-')} (id {experiment.get('id', '-')})",
        f"  Status:        {data.get('status') or '-'}",
    ]
    return [
        ("Tracking", "\n".join(summary)),
        ("Params", table(params, param_cols) if params else none),
        ("Metrics", table(latest, metric_cols) if latest else none),
        ("Artifacts", artifacts),
    ]
