"""`runyard nodes`: the node's capacity, what runs hold of it, and its GPUs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from runyard.cli.context import state
from runyard.cli.errors import note
from runyard.cli.options import output_option
from runyard.cli.output import Column, Output, echo, table, to_yaml_documents
from runyard.cli.project_files import size_text

Doc = dict[str, Any]


def _of(node: Doc, key: str, fmt) -> str:
    held, total = node.get("allocated", {}).get(key), node.get("allocatable", {}).get(key)
    return f"{fmt(held or 0)}/{fmt(total or 0)}"


NODE_COLUMNS = [
    Column("NAME", lambda n: str(n.get("name", ""))),
    Column("CPU", lambda n: _of(n, "cpu", lambda v: f"{v:g}")),
    Column("MEMORY", lambda n: _of(n, "memory", size_text)),
    Column("GPU", lambda n: _of(n, "gpu", str)),
    Column("RUNS", lambda n: str(n.get("runs", 0))),
]
GPU_COLUMNS = [
    Column("NODE", lambda g: str(g["node"])),
    Column("GPU", lambda g: str(g.get("index", ""))),
    Column("MODEL", lambda g: str(g.get("model", "")) + (" (simulated)" if g.get("simulated") else "")),
    Column("MEMORY", lambda g: size_text(g["memoryBytes"]) if g.get("memoryBytes") else "-"),
    Column("UTIL", lambda g: "-" if g.get("utilization") is None else f"{g['utilization']}%"),
    Column(
        "RUN",
        lambda g: g.get("run") or "-",
        colour=lambda g: "cyan" if g.get("run") else None,
    ),
]


@click.command()
@output_option(help="table, json or yaml.")
@click.pass_context
def nodes(ctx: click.Context, output: Output) -> None:
    """The node's capacity, what runs hold of it (held/allocatable), and its GPUs with their holders."""
    items = state(ctx).rest().nodes()
    if output is Output.JSON:
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
        return
    if output is Output.YAML:
        sys.stdout.write(to_yaml_documents(items))
        return
    if not items:
        note("no nodes")
        return
    echo(table(items, NODE_COLUMNS))
    gpus = [{**g, "node": n.get("name", "")} for n in items for g in n.get("gpus", [])]
    if gpus:
        echo("")
        echo(table(gpus, GPU_COLUMNS))
    for n in items:
        if n.get("gpuNote"):
            note(f"{n.get('name')}: no GPUs ({n['gpuNote']})")
