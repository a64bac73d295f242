"""`runyard apply`, `get`, `describe` and `delete`: the declarative verbs over every kind."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runyard.cli.context import state
from runyard.cli.errors import USAGE_EXIT, fail, note, parse_pairs, report
from runyard.cli.options import LABELS, SORT, output_option
from runyard.cli.output import Output, echo, order, render, to_yaml
from runyard.cli.output import describe as show_description
from runyard.core.errors import Invalid, RunyardError, Unavailable
from runyard.core.kinds import Kind, resolve_kind

if TYPE_CHECKING:
    from runyard.rest import Rest

FILES = click.option(
    "-f", "--filename", "files", multiple=True, metavar="FILE", help="YAML file; - reads stdin; repeatable."
)
Document = tuple[str, int, dict[str, Any]]  # (file, index in it from 1, the document)


@click.command(short_help="Create or update resources from YAML files.")
@FILES
@click.option(
    "--snapshot/--no-snapshot",
    default=True,
    show_default=True,
    help="Upload the YAML file's directory (cwd for stdin) as the code of documents without one.",
)
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...], snapshot: bool) -> None:
    """Create or update the resources described in YAML files (documents split by --- are allowed)."""
    docs = _documents(files)
    for name, index, doc in docs:
        _validate(name, index, doc)  # nothing is sent unless every document is valid
    rest = state(ctx).rest()
    if snapshot:
        _attach_snapshots(rest, docs)
    for _name, _index, doc in docs:
        stored, outcome = rest.apply(doc)
        echo(f"{stored['kind'].lower()}/{stored['metadata']['name']} {outcome}")


def _documents(files: tuple[str, ...]) -> list[Document]:
    if not files:
        raise fail("no file given", hint="pass -f FILE (or -f - for stdin)")
    return [(name, index, doc) for name in files for index, doc in enumerate(load_documents(name), 1)]


def _attach_snapshots(rest: Rest, docs: list[Document]) -> None:
    """Give each document that runs code and names none the snapshot of its project directory, as
    `runyard run` does; each directory is uploaded once, and unchanged files not at all."""
    from runyard.cli.project_files import upload

    uploaded: dict[Path, str] = {}
    for name, _index, doc in docs:
        spec = doc.get("spec") or {}
        target = spec.get("template") if doc.get("kind") == "Job" else spec
        if not isinstance(target, dict) or target.get("snapshot"):
            continue
        root = Path.cwd() if name == "-" else Path(name).resolve().parent
        if root not in uploaded:
            uploaded[root] = upload(rest, root)
        target["snapshot"] = uploaded[root]
        doc["spec"] = spec


def load_documents(name: str) -> list[Any]:
    """The non-empty YAML documents of a file; a syntax error exits 2 with `FILE:LINE:COL: problem`, and so
    does a file with no document at all."""
    import yaml

    label = "<stdin>" if name == "-" else name
    try:
        text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise fail(f"{label}: {exc.strerror or exc}") from None
    try:
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise fail(f"{where}: {exc.problem or exc.context or 'invalid YAML'}") from None
    except yaml.YAMLError as exc:
        raise fail(f"{label}: {exc}") from None
    if not docs:
        raise fail(f"no documents in {label}", hint="a document has apiVersion, kind, metadata and spec")
    return docs


def _validate(name: str, index: int, doc: Any) -> None:
    from runyard.core.resources import parse_workload

    try:
        parse_workload(doc)
    except Invalid as err:
        report(err, prefix=f"{'<stdin>' if name == '-' else name} (document {index}): ")
        raise click.exceptions.Exit(1) from None


def kind_of(word: str) -> Kind:
    """What the user typed ('exp', 'runs', 'Model') as a kind, or exit 2 naming the ones that exist."""
    try:
        return resolve_kind(word)
    except Invalid as err:
        report(err)
        raise click.exceptions.Exit(USAGE_EXIT) from None


@click.command(short_help="List the resources of a kind, or show one.")
@click.argument("kind_word", metavar="KIND")
@click.argument("name", required=False)
@output_option()
@LABELS
@SORT
@click.option("--watch", "-w", is_flag=True, help="After the list, print every change (Ctrl-C ends).")
@click.pass_context
def get(
    ctx: click.Context,
    kind_word: str,
    name: str | None,
    output: Output,
    selector: tuple[str, ...],
    sort: str | None,
    watch: bool,
) -> None:
    """Show resources of a KIND (experiments, jobs, models, sessions, runs; or exp, run...), or the one
    NAME: a table, or JSON / YAML that `apply -f` takes back."""
    kind = kind_of(kind_word)
    labels = parse_pairs(selector, "-l")
    rest = state(ctx).rest()
    if watch:
        _watch(rest, kind, name, labels, output)
        return
    if name is not None:
        render([rest.get(kind.plural, name)], output, single=True)
        return
    items = order(rest.list(kind.plural, labels or None), kind.name, sort)
    if not items and output in (Output.TABLE, Output.WIDE):
        note(f"no {kind.plural} in project {rest.project}" + (" match" if labels else ""))
        return
    render(items, output)


WATCH_LINE = "{:<9} {:<24} {:<10} {}"


def _watch(rest: Rest, kind: Kind, name: str | None, labels: dict[str, str], output: Output) -> None:
    """Changes as they happen: a line each under a header (EVENT, NAME, PHASE, REASON), or JSON lines / YAML
    documents."""
    if output in (Output.TABLE, Output.WIDE):
        echo(WATCH_LINE.format("EVENT", "NAME", "PHASE", "REASON").rstrip())
    try:
        for event in rest.watch(kind.plural, labels or None):
            res = event["object"]
            if name is not None and res["metadata"]["name"] != name:
                continue
            if output in (Output.TABLE, Output.WIDE):
                status = res.get("status") or {}
                line = WATCH_LINE.format(
                    event["type"],
                    res["metadata"]["name"],
                    status.get("phase") or "-",
                    status.get("reason") or "",
                )
                echo(line.rstrip())
            else:
                doc = {"type": event["type"], "revision": event["revision"], "object": res}
                sys.stdout.write(json.dumps(doc) + "\n" if output is Output.JSON else "---\n" + to_yaml(doc))
                sys.stdout.flush()
    except KeyboardInterrupt:
        return
    # A watch never ends by itself: the server closed it (a restart, or a failure it logged).
    raise Unavailable("the server closed the watch; run the command again to go on watching")


@click.command()
@click.argument("kind_word", metavar="KIND")
@click.argument("name")
@output_option("table, json or yaml.", choices=("table", "json", "yaml"))
@click.pass_context
def describe(ctx: click.Context, kind_word: str, name: str, output: Output) -> None:
    """Show one resource in detail (KIND NAME), with its events; a run with its params, latest metrics and
    artifacts; a job with its next five fire times."""
    kind = kind_of(kind_word)
    rest = state(ctx).rest()
    resource = rest.get(kind.plural, name)
    events = rest.events(kind.plural, name)
    tracked: dict[str, Any] = {}
    if kind.name == "Run":
        from runyard.cli.tracking import tracked_data

        tracked = tracked_data(rest, name)
    schedule = rest.job_schedule(name, 5) if kind.name == "Job" else None
    if output is Output.TABLE:
        from runyard.cli.tracking import tracked_sections

        sections = run_sections(resource) if kind.name == "Run" else []
        if schedule is not None:
            from runyard.cli.jobs import next_fires_text

            sections.append(("Next fires", next_fires_text(schedule)))
        show_description(resource, events, sections + (tracked_sections(tracked) if tracked else []))
        return
    doc = {"object": resource, **tracked, **({"schedule": schedule} if schedule else {}), "events": events}
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if output is Output.JSON else to_yaml(doc))


def run_sections(run: dict[str, Any]) -> list[tuple[str, str]]:
    """The Runtime section of `describe run`: its environment, sandbox, limits, allocation and peak memory,
    a line each, those the status holds."""
    from runyard.cli.project_files import size_text

    status = run.get("status") or {}
    lines = []
    env = status.get("environment")
    if env:
        n = env.get("packages") or 0
        detail = [f"python {env.get('python', '-')}", f"{n} package{'s' if n != 1 else ''}"]
        if env.get("lockDigest"):
            detail.append(f"lock {env['lockDigest'][:19]}")
        lines.append(("Environment", f"{env.get('id')} ({env.get('name', 'default')}; {', '.join(detail)})"))
    sandbox = status.get("sandbox")
    if sandbox:
        mechanism = sandbox.get("mechanism") or "none"
        text = f"{mechanism} {sandbox.get('version') or ''}".strip()
        lines.append(
            ("Sandbox", f"none: {sandbox.get('reason') or 'not sandboxed'}" if mechanism == "none" else text)
        )
    limits = status.get("limits")
    if limits:
        lines.append(("Limits", _limits_text(limits, size_text)))
    allocation = status.get("allocation")
    if allocation:
        parts = [f"cpu {allocation['cpu']}" if allocation.get("cpu") else ""]
        parts.append(f"memory {size_text(allocation['memory'])}" if allocation.get("memory") else "")
        gpus = allocation.get("gpus") or []
        parts.append(f"GPU {','.join(str(g) for g in gpus)}" if gpus else "")
        lines.append(("Allocation", ", ".join(p for p in parts if p) or "nothing reserved"))
    if status.get("peakMemoryBytes") is not None:
        lines.append(("Peak memory", size_text(status["peakMemoryBytes"])))
    if not lines:
        return []
    width = max(len(label) for label, _ in lines) + 2
    return [("Runtime", "\n".join(f"  {label + ':':<{width}}{value}" for label, value in lines))]


def _limits_text(limits: dict[str, Any], size_text: Any) -> str:
    parts = [f"cpu {limits['cpu']}" if limits.get("cpu") is not None else ""]
    parts.append(f"memory {size_text(limits['memory'])}" if limits.get("memory") is not None else "")
    parts.append(f"pids {limits['pids']}" if limits.get("pids") is not None else "")
    how = limits.get("mechanism") or "none"
    if limits.get("note"):
        how += f"; {limits['note']}"
    return f"{', '.join(p for p in parts if p) or 'none'} ({how})"


@click.command(short_help="Delete resources by kind and name, or as a file names them.")
@click.argument("kind_word", metavar="[KIND", required=False)
@click.argument("names", metavar="NAME...]", nargs=-1)
@FILES
@click.pass_context
def delete(ctx: click.Context, kind_word: str | None, names: tuple[str, ...], files: tuple[str, ...]) -> None:
    """Delete KIND NAME..., or what each document of -f FILE names (the controller stops their runs)."""
    if files and kind_word:
        raise fail("give either KIND NAME... or -f FILE, not both")
    if files:
        targets = [_target(*document) for document in _documents(files)]
    elif kind_word and names:
        kind = kind_of(kind_word)
        targets = [(kind, name) for name in names]
    else:
        raise fail("nothing to delete", hint="runyard delete KIND NAME..., or runyard delete -f FILE")
    rest = state(ctx).rest()
    failed = False
    for kind, name in targets:
        try:
            rest.delete(kind.plural, name)
        except RunyardError as err:
            report(err, prefix=f"{kind.name.lower()}/{name}: ")
            failed = True
            continue
        echo(f"{kind.name.lower()}/{name} deleted")
    if failed:
        raise click.exceptions.Exit(1)


def _target(file: str, index: int, doc: Any) -> tuple[Kind, str]:
    """The kind and name a document of `delete -f` names."""
    where = f"{'<stdin>' if file == '-' else file} (document {index})"
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name or not isinstance(doc.get("kind"), str):
        raise fail(f"{where}: a document to delete needs a kind and a metadata.name")
    try:
        return resolve_kind(doc["kind"]), name
    except Invalid as err:
        report(err, prefix=f"{where}: ")
        raise click.exceptions.Exit(USAGE_EXIT) from None
