"""`runyard models deploy|list|status|predict|rollback|keys`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runyard.cli.context import state
from runyard.cli.errors import RunyardGroup, fail, note, parse_pairs
from runyard.cli.options import output_option
from runyard.cli.output import (
    AGE,
    NAME,
    PHASE_COLOURS,
    Column,
    Doc,
    Output,
    age,
    echo,
    paint,
    render,
    render_list,
    table,
    timestamp,
    to_yaml,
)

if TYPE_CHECKING:
    from runyard.rest import Rest

COLOURS = {**PHASE_COLOURS, "Ready": "green", "Updating": "cyan", "ScaledToZero": "blue"}
SETTLED = ("Ready", "ScaledToZero")  # deploy waits for one of these, with the applied spec rolled out


@click.group(cls=RunyardGroup)
def models() -> None:
    """Serve models: deploy, call, watch, roll back, and manage access keys."""


def _status(doc: Doc) -> Doc:
    return doc.get("status") or {}


def _phase_colour(doc: Doc) -> str | None:
    return COLOURS.get(_status(doc).get("phase") or "")


def _current(doc: Doc) -> str:
    status = _status(doc)
    current, target = status.get("currentVersion"), status.get("targetVersion")
    text = "-" if current is None else f"v{current}"
    return f"{text} -> v{target}" if target is not None and target != current else text


def _replicas(doc: Doc) -> str:
    status = _status(doc)
    return f"{status.get('readyReplicas', 0)}/{status.get('desiredReplicas', 0)}"


def _serves(doc: Doc) -> str:
    spec = doc.get("spec") or {}
    return str(spec.get("handler") or spec.get("modelUri") or "-")


LIST_COLUMNS = [
    NAME,
    Column("PHASE", lambda d: _status(d).get("phase") or "-", colour=_phase_colour),
    Column("VERSION", _current),
    Column("READY", _replicas),
    Column("URL", lambda d: _status(d).get("url") or "-"),
    Column("SERVES", _serves, wide=True),
    AGE,
]


# -- deploy ----------------------------------------------------------------------------------------------


def default_name(path: Path) -> str:
    """The directory's name as a resource name: lowercase letters, digits and '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", path.resolve().name.lower()).strip("-")[:63].strip("-")
    return name or "model"


@models.command(short_help="Serve a handler or an MLflow model from a project directory; print its URL.")
@click.option("--name", "-n", help="The model's name (default: the directory's name).")
@click.option("--handler", metavar="MODULE:FUNCTION", help="The function in the directory that answers.")
@click.option("--model-uri", metavar="URI", help="An MLflow model: runs:/…, models:/NAME@alias, a path.")
@click.option(
    "--path",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    help="Directory whose files the replicas get (default: cwd).",
)
@click.option("--replicas", type=click.IntRange(0, 100), help="How many replicas (without autoscaling).")
@click.option("--min", "min_replicas", type=click.IntRange(0, 100), help="Autoscale: at least (0: to zero).")
@click.option("--max", "max_replicas", type=click.IntRange(1, 100), help="Autoscale: at most.")
@click.option("--target-in-flight", type=float, help="Autoscale: requests in flight per replica.")
@click.option(
    "--env", "-e", multiple=True, metavar="KEY=VALUE", help="A variable of the replicas; repeatable."
)
@click.option("--environment", metavar="ENV", help="default, system, a built environment's name or id.")
@click.option("--cpu", help="CPU cores per replica, e.g. 1 or 500m.")
@click.option("--memory", help="Memory per replica, e.g. 512Mi.")
@click.option("--gpu", type=int, help="Whole GPUs per replica.")
@click.option("--log-sample", type=click.FloatRange(0, 1), help="Share of requests logged with the version.")
@click.option("--no-wait", is_flag=True, help="Apply and return at once, without waiting until Ready.")
@click.option(
    "--timeout", type=float, default=300, show_default=True, help="Seconds to wait until it is Ready."
)
@output_option("Print the Model (json or yaml) once it is Ready.", default=None, choices=("json", "yaml"))
@click.pass_context
def deploy(
    ctx: click.Context,
    name: str | None,
    handler: str | None,
    model_uri: str | None,
    path: Path,
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    target_in_flight: float | None,
    env: tuple[str, ...],
    environment: str | None,
    cpu: str | None,
    memory: str | None,
    gpu: int | None,
    log_sample: float | None,
    no_wait: bool,
    timeout: float,
    output: Output | None,
) -> None:
    """Deploy (or update, with a rolling update that drops no request) the model NAME serving --handler or
    --model-uri with the files of --path; wait until it is Ready and print its URL."""
    from runyard.cli.project_files import upload
    from runyard.rest import model

    if (handler is None) == (model_uri is None):
        raise fail("give exactly one of --handler MODULE:FUNCTION and --model-uri URI")
    scaling = {"minReplicas": min_replicas, "maxReplicas": max_replicas, "targetInFlight": target_in_flight}
    autoscaling = {k: v for k, v in scaling.items() if v is not None}
    if autoscaling and replicas is not None:
        raise fail("--replicas is for a fixed count: give it, or --min/--max/--target-in-flight, not both")
    name = name or default_name(path)
    rest = state(ctx).rest()
    snapshot = upload(rest, path)
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu}
    variables = parse_pairs(env, "--env")
    doc = model(
        name,
        handler,
        model_uri,
        snapshot,
        replicas,
        autoscaling,
        variables,
        resources,
        environment,
        log_sample,
    )
    applied, outcome = rest.apply(doc)
    note(f"model {click.style(name, bold=True)} {outcome}")
    if not no_wait:
        applied = wait_ready(rest, name, applied["metadata"].get("generation"), timeout)
    if output is not None:
        render([applied], output, single=True)
    else:
        url = _status(applied).get("url")
        sys.stdout.write(f"{url}\n" if url else "")


def wait_ready(rest: Rest, name: str, generation: int | None, timeout: float) -> Doc:
    """Poll until the model has rolled out `generation` and is Ready (or scaled to zero), saying on stderr
    each change of phase and replicas; exit 1 if it fails, or after `timeout` seconds."""
    from runyard.cli.follow import wait_until

    def line(doc: Doc) -> str:
        status = _status(doc)
        text = f"{status.get('phase') or 'Pending'}: {_replicas(doc)} replicas ready, version {_current(doc)}"
        return text + (f" ({status['message']})" if status.get("message") else "")

    def settled(doc: Doc) -> bool | None:
        status = _status(doc)
        rolled_out = generation is None or (status.get("observedGeneration") or 0) >= generation
        if rolled_out and status.get("phase") == "Failed":
            return None
        current = status.get("targetVersion") in (None, status.get("currentVersion"))
        return rolled_out and status.get("phase") in SETTLED and current

    return wait_until(rest, "models", name, line, settled, COLOURS, "Ready", timeout, 0.25)


# -- list, status ----------------------------------------------------------------------------------------


@models.command("list", short_help="List the project's models: phase, version, replicas, URL.")
@output_option()
@click.pass_context
def list_(ctx: click.Context, output: Output) -> None:
    """List the project's models by name: phase, the version serving (-> the one rolling out), ready and
    desired replicas, URL."""
    rest = state(ctx).rest()
    docs = sorted(rest.list("models"), key=lambda d: d["metadata"]["name"])
    empty = f"no models in project {rest.project}; `runyard models deploy --handler mod:fn` serves one"
    render_list(docs, output, LIST_COLUMNS, empty)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


VERSION_COLUMNS = [
    Column("VERSION", lambda v: f"v{v['version']}" + (" *" if v.get("current") else "")),
    Column("CREATED", lambda v: f"{age(timestamp(v.get('createdAt')))} ago" if v.get("createdAt") else "-"),
    Column("READY", lambda v: f"{v['readyReplicas']}/{v['replicas']}"),
    Column("REQUESTS", lambda v: str(v["requests"])),
    Column(
        "ERRORS",
        lambda v: f"{v['errors']} ({v['errorRate']:.1%})" if v["requests"] else "0",
        colour=lambda v: "red" if v["errors"] else None,
    ),
    Column("P50 MS", lambda v: _ms(v["p50Ms"])),
    Column("P95 MS", lambda v: _ms(v["p95Ms"])),
    Column("P99 MS", lambda v: _ms(v["p99Ms"])),
    Column("IN FLIGHT", lambda v: str(v["inFlight"])),
    Column("SERVES", lambda v: v.get("serves") or "-"),
]


@models.command(short_help="Show a model: URL, replicas, and each version with its figures.")
@click.argument("name")
@output_option("table, json or yaml (the model and its metrics).", choices=("table", "json", "yaml"))
@click.pass_context
def status(ctx: click.Context, name: str, output: Output) -> None:
    """Show model NAME: phase, URL, replicas, and per version (* serves the traffic) its requests, errors,
    latency quantiles and replicas, cumulative since the server started watching."""
    rest = state(ctx).rest()
    doc = rest.get("models", name)
    figures = rest.model_metrics(name)
    if output is not Output.TABLE:
        _dump({"model": doc, "metrics": figures}, output)
        return
    st = _status(doc)
    phase = st.get("phase") or "Pending"
    message = f" ({st['message']})" if st.get("message") else ""
    fields = [
        ("Model", name),
        ("Phase", paint(phase, COLOURS.get(phase)) + message),
        ("URL", st.get("url") or "-"),
        ("Replicas", f"{_replicas(doc)} ready of desired, {st.get('replicas', 0)} running"),
        ("Version", _current(doc)),
    ]
    lines = [paint(f"{label + ':':<10}", None, bold=True) + f" {value}" for label, value in fields]
    echo("\n".join(lines))
    made = {v["version"]: v for v in st.get("versions") or []}
    rows = []
    for fig in figures["versions"]:
        version = made.get(fig["version"]) or {}
        spec = version.get("spec") or {}
        serves = version.get("source") or spec.get("handler") or spec.get("modelUri")
        current = fig["version"] == st.get("currentVersion")
        rows.append({**fig, "createdAt": version.get("createdAt"), "serves": serves, "current": current})
    if rows:
        echo("")
        echo(table(rows, VERSION_COLUMNS))


# -- predict, rollback -----------------------------------------------------------------------------------


@models.command(short_help="Send one JSON request to a model and print its answer.")
@click.argument("name")
@click.argument("body", default="-")
@click.option("--key", help="A model access key to call with (default: your API token).")
@click.pass_context
def predict(ctx: click.Context, name: str, body: str, key: str | None) -> None:
    """POST BODY (JSON; '-' or absent: read standard input; @FILE: that file) to model NAME's URL and print
    the JSON answer."""
    if body == "-":
        text = sys.stdin.read()
    elif body.startswith("@"):
        try:
            text = Path(body[1:]).read_text()
        except OSError as exc:
            raise fail(f"cannot read {body[1:]}: {exc.strerror}") from None
    else:
        text = body
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise fail(f"the request body is not JSON: {exc}") from None
    answer = state(ctx).rest().predict(name, payload, key)
    sys.stdout.write(json.dumps(answer, indent=2) + "\n")


@models.command(short_help="Serve an earlier version of a model again.")
@click.argument("name")
@click.option("--to", "version", type=click.IntRange(min=1), required=True, help="The version (see status).")
@click.option("--no-wait", is_flag=True, help="Return at once, without waiting until it is rolled out.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait.")
@click.pass_context
def rollback(ctx: click.Context, name: str, version: int, no_wait: bool, timeout: float) -> None:
    """Make model NAME serve version --to again: its spec becomes that version's, and it rolls out like any
    update (no request dropped)."""
    rest = state(ctx).rest()
    doc = rest.rollback_model(name, version)
    note(f"model {click.style(name, bold=True)} rolling back to v{version}")
    if not no_wait:
        wait_ready(rest, name, doc["metadata"].get("generation"), timeout)
        note(f"model {name} serves v{version}")


# -- keys ------------------------------------------------------------------------------------------------


@models.group(cls=RunyardGroup, short_help="Create, list and revoke a model's access keys.")
def keys() -> None:
    """Access keys: each lets its holder call one model (send it as 'Authorization: Bearer KEY')."""


KEY_COLUMNS = [
    Column("ID", lambda k: str(k["id"])),
    Column("PREFIX", lambda k: str(k["prefix"]) + "…"),
    Column("DESCRIPTION", lambda k: k.get("description") or "-"),
    Column("CREATED", lambda k: f"{age(timestamp(k.get('createdAt')))} ago"),
    Column(
        "LAST USED", lambda k: f"{age(timestamp(k['lastUsedAt']))} ago" if k.get("lastUsedAt") else "never"
    ),
    Column("BY", lambda k: k.get("createdBy") or "-"),
]


@keys.command("create", short_help="Make an access key of a model; it is shown this once.")
@click.argument("name")
@click.option("--description", "-d", default="", help="Who or what the key is for.")
@output_option(
    "text (the key alone on stdout), json or yaml.", default="table", choices=("table", "json", "yaml")
)
@click.pass_context
def create_key(ctx: click.Context, name: str, description: str, output: Output) -> None:
    """Make an access key that may call model NAME (and nothing else); it is printed this once, and the
    server keeps only its hash."""
    made = state(ctx).rest().create_model_key(name, description)
    if output is not Output.TABLE:
        _dump(made, output)
        return
    note(f"key {made['id']} of model {name}; it is shown this once, keep it now")
    sys.stdout.write(made["key"] + "\n")


@keys.command("list", short_help="List a model's access keys (never the keys themselves).")
@click.argument("name")
@output_option("table, json or yaml.", choices=("table", "json", "yaml"))
@click.pass_context
def list_keys(ctx: click.Context, name: str, output: Output) -> None:
    items = state(ctx).rest().model_keys(name)
    if output is not Output.TABLE:
        _dump({"items": items}, output)
    elif not items:
        note(f"model {name} has no keys; `runyard models keys create {name}` makes one")
    else:
        echo(table(items, KEY_COLUMNS))


@keys.command("revoke", short_help="Revoke one of a model's access keys.")
@click.argument("name")
@click.argument("key_id")
@click.pass_context
def revoke_key(ctx: click.Context, name: str, key_id: str) -> None:
    """Revoke key KEY_ID of model NAME: refused at once by the server, and by replicas within their auth
    cache's seconds."""
    state(ctx).rest().revoke_model_key(name, key_id)
    note(f"key {key_id} of model {name} revoked")


def _dump(data: Any, output: Output) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n" if output is Output.JSON else to_yaml(data))
