"""How the CLI reports failure: one readable red line, the field details, a hint; never a traceback."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from runyard.core.errors import Forbidden, NotFound, RunyardError, Unauthorized

USAGE_EXIT = 2
INTERRUPTED_EXIT = 130
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

_HINTS: dict[type[RunyardError], str] = {
    Unauthorized: "pass --token or set RUNYARD_TOKEN (the embedded server's is in its home, admin-token)",
    Forbidden: "ask an admin of the project for a role that allows this",
    NotFound: "`runyard get KIND` lists what exists; `-p PROJECT` picks another project",
}


def report(err: RunyardError, prefix: str = "") -> None:
    """Print `error: <message>`, then `  <field>: <reason>` per detail, then a hint where one helps."""
    stderr.print(f"[bold red]error:[/] {escape(prefix + err.message)}")
    for detail in err.details:
        stderr.print(f"  [yellow]{escape(detail.field)}[/]: {escape(detail.reason)}")
    hint = _HINTS.get(type(err))
    if hint:
        stderr.print(f"[dim]hint: {escape(hint)}[/]")


def fail(message: str, code: int = USAGE_EXIT, hint: str | None = None) -> typer.Exit:
    """Report a problem found by the CLI itself (bad usage, unreadable input); raise what it returns."""
    stderr.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        stderr.print(f"[dim]hint: {escape(hint)}[/]")
    return typer.Exit(code)


class RunyardGroup(TyperGroup):
    """Turns the expected failures of any command into a short report and an exit code."""

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RunyardError as err:
            report(err)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            stderr.print()
            raise typer.Exit(INTERRUPTED_EXIT) from None


def parse_pairs(pairs: list[str], option: str) -> dict[str, str]:
    """KEY=VALUE options (--env, -l) into a dict; a malformed one is a usage error naming the option."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"{option} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out
