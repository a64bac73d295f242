"""`runyard artifacts ls|get`: the files a run kept, listed and downloaded (streamed to disk)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runyard.cli.context import state
from runyard.cli.errors import note, report
from runyard.cli.options import output_option
from runyard.cli.output import Column, Doc, Output, echo, table, to_yaml
from runyard.cli.project_files import TransferProgress, size_text
from runyard.core.errors import NotFound, RunyardError

if TYPE_CHECKING:
    from runyard.rest import Rest


@click.group(short_help="List and download the files a run kept.")
def artifacts() -> None:
    """The artifacts of a run: files it logged (runyard.log_artifact, mlflow.log_artifact, models)."""


@artifacts.command("ls", short_help="List a run's artifacts.")
@click.argument("run_name", metavar="RUN")
@click.argument("path", default="")
@click.option("--recursive", "-R", is_flag=True, help="Every file under PATH, in subfolders too.")
@output_option("table, wide (sizes in bytes), json or yaml.")
@click.pass_context
def ls(ctx: click.Context, run_name: str, path: str, recursive: bool, output: Output) -> None:
    """List the artifacts of RUN in the folder PATH (default: the top)."""
    rest = state(ctx).rest()
    try:
        listing = rest.artifacts(run_name, path)
        if recursive:
            listing["files"] = rest.artifact_files(run_name, path)
    except NotFound:
        raise _missing(rest, run_name, path) from None
    if output in (Output.JSON, Output.YAML):
        sys.stdout.write(json.dumps(listing, indent=2) + "\n" if output is Output.JSON else to_yaml(listing))
        return
    if not listing["files"]:
        note(f"run {run_name} has no artifacts" + (f" under {path}" if path else ""))
        return
    echo(files_table(listing["files"], exact=output is Output.WIDE))


def files_table(files: list[Doc], exact: bool = False, indent: str = "") -> str:
    """PATH and SIZE of each entry (a folder ends in /), by path."""
    cols = [
        Column(f"{indent}PATH", lambda f: indent + f["path"] + ("/" if f["is_dir"] else "")),
        Column("SIZE", lambda f: _size(f, exact)),
    ]
    return table(sorted(files, key=lambda f: f["path"]), cols)


def _size(entry: Doc, exact: bool) -> str:
    size = entry.get("file_size")
    if entry["is_dir"] or size is None:
        return "-"
    return str(size) if exact else size_text(size)


@artifacts.command(short_help="Download a run's artifact file or folder.")
@click.argument("run_name", metavar="RUN")
@click.argument("path", default="")
@click.option(
    "--dest",
    "-o",
    type=click.Path(path_type=Path),
    help="Where to: a folder's files go into DEST (default ./its name, ./RUN for all); "
    "a file goes to DEST, or into it if it is a folder (default ./its name).",
)
@click.pass_context
def get(ctx: click.Context, run_name: str, path: str, dest: Path | None) -> None:
    """Download the artifact PATH of RUN (a file, or a folder with everything under it; default: all of
    them), streamed to disk with a progress bar for large files."""
    rest = state(ctx).rest()
    try:
        where, plan = rest.artifact_plan(run_name, path, dest)
    except NotFound:
        raise _missing(rest, run_name, path) from None
    total = 0
    for entry, target in plan:
        try:
            with TransferProgress(f"Downloading {entry['path']}") as progress:
                total += rest.download_artifact(run_name, entry["path"], target, progress)
        except NotFound:
            raise _missing(rest, run_name, entry["path"]) from None
        except OSError as exc:
            culprit = f": {exc.filename}" if exc.filename and str(exc.filename) != str(target) else ""
            report(RunyardError(f"cannot write {target}: {exc.strerror or exc}{culprit}"))
            raise click.exceptions.Exit(1) from None
    files = f"{len(plan)} file{'s' if len(plan) != 1 else ''}"
    note(f"downloaded {files} ({size_text(total)}) to {where}")


def _missing(rest: Rest, run_name: str, path: str) -> click.exceptions.Exit:
    """The run, or the artifact in it, is missing: say which."""
    try:
        rest.tracking(run_name)
    except NotFound:
        report(
            NotFound(f"run {run_name!r} not found in project {rest.project!r}"),
            hint="`runyard runs list` lists the runs",
        )
        return click.exceptions.Exit(1)
    report(
        NotFound(f"run {run_name} has no artifact {path!r}" if path else f"run {run_name} has no artifacts"),
        hint=f"`runyard artifacts ls -R {run_name}` lists its artifacts",
    )
    return click.exceptions.Exit(1)
