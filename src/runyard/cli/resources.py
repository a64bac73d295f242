"""`runyard apply`, `get`, `describe` and `delete`: the declarative verbs over every kind."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from runyard.cli.context import state
from runyard.cli.errors import USAGE_EXIT, fail, parse_pairs, report, stderr
from runyard.cli.output import Output, render, stdout, to_yaml
from runyard.cli.output import describe as show_description
from runyard.core.errors import Invalid

if TYPE_CHECKING:
    from runyard.client import Client
    from runyard.core.resources import Resource


def apply(
    ctx: typer.Context,
    files: list[str] = typer.Option(..., "-f", "--filename", help="YAML file(s) to apply; - reads stdin."),
    snapshot: bool = typer.Option(
        True,
        "--snapshot/--no-snapshot",
        help="Upload the YAML file's directory (cwd for stdin) as the code of documents without one.",
    ),
) -> None:
    """Create or update the resources described in YAML files (documents split by --- are allowed)."""
    docs = [(name, index, doc) for name in files for index, doc in enumerate(load_documents(name), 1)]
    for name, index, doc in docs:
        _validate(name, index, doc)  # nothing is sent unless every document is valid
    client = state(ctx).client()
    if snapshot:
        _attach_snapshots(client, docs)
    for _name, _index, doc in docs:
        result = client.apply_result(doc)
        meta = result.resource.metadata
        stdout().print(f"{result.resource.kind.lower()}/{meta.name} {result.outcome}")


def _attach_snapshots(client: Client, docs: list[tuple[str, int, Any]]) -> None:
    """Give each document that runs code and names none the snapshot of its project directory, as
    `runyard run` does; each directory is uploaded once, and unchanged files not at all."""
    uploaded: dict[Path, str] = {}
    for name, _index, doc in docs:
        spec = doc.get("spec") or {}
        target = spec.get("template") if doc.get("kind") == "Job" else spec
        if not isinstance(target, dict) or target.get("snapshot"):
            continue
        root = Path.cwd() if name == "-" else Path(name).resolve().parent
        if root not in uploaded:
            uploaded[root] = client.upload_snapshot(root)
        target["snapshot"] = uploaded[root]
        doc["spec"] = spec


def load_documents(name: str) -> list[Any]:
    """The non-empty YAML documents of a file; a syntax error exits 2 with `FILE:LINE:COL: problem`."""
    import yaml

    label = "<stdin>" if name == "-" else name
    try:
        text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise fail(f"{label}: {exc.strerror or exc}") from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise fail(f"{where}: {exc.problem or exc.context or 'invalid YAML'}") from None
    except yaml.YAMLError as exc:
        raise fail(f"{label}: {exc}") from None


def _validate(name: str, index: int, doc: Any) -> None:
    from runyard.core.resources import parse_workload

    try:
        parse_workload(doc)
    except Invalid as err:
        report(err, prefix=f"{'<stdin>' if name == '-' else name} (document {index}): ")
        raise typer.Exit(1) from None


def resolve_kind(word: str) -> type[Resource]:
    """What the user typed ('exp', 'runs', 'Model') as a kind, or exit 2 naming the ones that exist."""
    from runyard.core.resources import kind_for

    try:
        return kind_for(word)
    except Invalid as err:
        report(err)
        raise typer.Exit(USAGE_EXIT) from None


def get(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="experiments, jobs, models, sessions or runs (or exp, run, ...)."),
    name: str | None = typer.Argument(None, help="One resource by name; omitted, all of the kind."),
    output: Output = typer.Option(Output.TABLE, "-o", "--output", help="table, json or yaml."),
    selector: list[str] = typer.Option([], "-l", "--selector", help="k=v label to match; repeatable."),
    watch: bool = typer.Option(
        False, "-w", "--watch", help="After the list, print every change (Ctrl-C ends)."
    ),
) -> None:
    """Show resources of one kind: a table, or JSON / YAML that `apply -f` takes back."""
    cls = resolve_kind(kind)
    labels = parse_pairs(selector, "-l")
    client = state(ctx).client()
    if watch:
        _watch(client, cls, name, output)
        return
    if name is not None:
        render([client.get(cls, name)], output, single=True)
        return
    items = client.list(cls, labels or None)
    if not items and output is Output.TABLE:
        stderr.print(f"no {cls.plural} in project {client.project}")
        return
    render(items, output)


def _watch(client: Client, cls: type[Resource], name: str | None, output: Output) -> None:
    """Changes as they happen: a line each (EVENT, NAME, PHASE, REASON), or JSON lines / YAML documents."""
    try:
        for event in client.watch(cls):
            res = event.object
            if name is not None and res.metadata.name != name:
                continue
            if output is Output.TABLE:
                status = getattr(res, "status", None)
                phase, reason = getattr(status, "phase", None) or "-", getattr(status, "reason", None) or ""
                sys.stdout.write(f"{event.type:<9} {res.metadata.name:<24} {phase:<10} {reason}\n")
            else:
                doc = {"type": event.type, "revision": event.revision, "object": res.model_dump(mode="json")}
                sys.stdout.write(json.dumps(doc) + "\n" if output is Output.JSON else "---\n" + to_yaml(doc))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


def describe(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="The kind, e.g. experiment or run."),
    name: str = typer.Argument(..., help="Name of the resource."),
    output: Output = typer.Option(Output.TABLE, "-o", "--output", help="table, json or yaml."),
) -> None:
    """Show one resource in detail, with its events."""
    cls = resolve_kind(kind)
    client = state(ctx).client()
    resource = client.get(cls, name)
    events = client.events(cls, name)
    if output is Output.TABLE:
        show_description(resource, events)
        return
    doc = {
        "object": resource.model_dump(mode="json", exclude_none=True),
        "events": [e.model_dump(mode="json") for e in events],
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if output is Output.JSON else to_yaml(doc))


def delete(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="The kind, e.g. experiment or job."),
    name: str = typer.Argument(..., help="Name of the resource."),
) -> None:
    """Delete a resource (its runs are stopped by the controller)."""
    cls = resolve_kind(kind)
    state(ctx).client().delete(cls, name)
    stdout().print(f"{cls.__name__.lower()}/{name} deleted")
