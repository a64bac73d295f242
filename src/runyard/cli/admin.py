"""`runyard projects` and `runyard tokens`: what an admin sets up for a team."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from runyard.cli.context import state
from runyard.cli.errors import note, report
from runyard.cli.options import output_option
from runyard.cli.output import Column, Output, age, echo, table, timestamp, to_yaml_documents
from runyard.core.errors import NotFound

ROLES = ("admin", "editor", "viewer")


def _newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: str(item.get("createdAt") or ""), reverse=True)


def _show(items: list[dict[str, Any]], output: Output, columns: list[Column], what: str) -> None:
    if output is Output.JSON:
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
    elif output is Output.YAML:
        sys.stdout.write(to_yaml_documents(items))
    elif not items:
        note(f"no {what}")
    else:
        echo(table(items, columns, whole=output is Output.WIDE))


CREATED = Column("AGE", lambda item: age(timestamp(item.get("createdAt"))))


@click.group(invoke_without_command=True, short_help="List the projects, or create one.")
@output_option()
@click.pass_context
def projects(ctx: click.Context, output: Output) -> None:
    """List the projects (newest first), or create one: `runyard projects create NAME`."""
    if ctx.invoked_subcommand is None:
        items = _newest_first(state(ctx).rest().projects())
        _show(items, output, [Column("NAME", lambda p: str(p.get("name", ""))), CREATED], "projects")


@projects.command("create")
@click.argument("name")
@click.pass_context
def create_project(ctx: click.Context, name: str) -> None:
    """Create the project NAME (an error if it exists already)."""
    created = state(ctx).rest().create_project(name)
    echo(f"project/{created.get('name', name)} created")


TOKEN_COLUMNS = [
    Column("ID", lambda t: str(t.get("id", ""))),
    Column("NAME", lambda t: str(t.get("name", ""))),
    Column("ROLE", lambda t: str(t.get("role", ""))),
    Column("PROJECT", lambda t: t.get("project") or "*"),
    CREATED,
    Column(
        "REVOKED",
        lambda t: "yes" if t.get("revoked") else "no",
        colour=lambda t: "red" if t.get("revoked") else None,
    ),
    Column("RUN", lambda t: t.get("runUid") or "-", wide=True),
]


@click.group(invoke_without_command=True, short_help="List, create or revoke API tokens.")
@output_option()
@click.pass_context
def tokens(ctx: click.Context, output: Output) -> None:
    """List the API tokens (newest first; never their secrets), or create or revoke one."""
    if ctx.invoked_subcommand is None:
        items = _newest_first(state(ctx).rest().tokens())
        columns = [col for col in TOKEN_COLUMNS if output is Output.WIDE or not col.wide]
        _show(items, output, columns, "tokens")


@tokens.command("list")
@output_option()
@click.pass_context
def list_tokens(ctx: click.Context, output: Output) -> None:
    """List the API tokens, newest first."""
    ctx.invoke(tokens, output=output)


@tokens.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. ci or alice-laptop.")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
    help="admin: everything; editor: read and write; viewer: read only.",
)
@click.option(
    "--project", "token_project", help="The one project an editor or viewer may act in (default: all)."
)
@output_option("table (the secret alone on stdout), json or yaml.", choices=("table", "json", "yaml"))
@click.pass_context
def create_token(ctx: click.Context, name: str, role: str, token_project: str | None, output: Output) -> None:
    """Create an API token and print its secret, which is shown this once."""
    created = state(ctx).rest().create_token(name, role, token_project)
    if output is not Output.TABLE:
        sys.stdout.write(
            json.dumps(created, indent=2) + "\n" if output is Output.JSON else to_yaml_documents([created])
        )
        return
    scope = f"project {token_project}" if token_project else "all projects"
    token_id = created.get("id")
    note(f"token {token_id} ({name}, {role}, {scope}) created; its secret is shown this once, keep it now:")
    sys.stdout.write(f"{created['token']}\n")


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@click.pass_context
def revoke_token(ctx: click.Context, token_id: str) -> None:
    """Revoke the token ID: it stops working at once."""
    try:
        revoked = state(ctx).rest().revoke_token(token_id)
    except NotFound as err:
        report(err, hint="`runyard tokens` lists the tokens and their ids")
        raise click.exceptions.Exit(1) from None
    echo(f"token {revoked.get('id', token_id)} ({revoked.get('name', '')}) revoked")
