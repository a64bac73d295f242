"""How the CLI reports failure: one readable red line, the field details, a hint; never a traceback."""

from __future__ import annotations

from typing import Any

import click

from runyard.cli.output import echo, paint
from runyard.core.errors import Forbidden, NotFound, RunyardError, Unauthorized

USAGE_EXIT = 2
INTERRUPTED_EXIT = 130

_HINTS: dict[type[RunyardError], str] = {
    Unauthorized: "pass --token or set RUNYARD_TOKEN (the embedded server's is in its home, admin-token)",
    Forbidden: "ask an admin of the project for a role that allows this",
    NotFound: "`runyard get KIND` lists what exists; `-p PROJECT` picks another project",
}


def note(message: str) -> None:
    """A line for the person at the terminal, on stderr (stdout stays for what programs read)."""
    echo(message, err=True)


def warn(message: str) -> None:
    echo(f"{paint('warning:', 'yellow', bold=True)} {message}", err=True)


def report(err: RunyardError, prefix: str = "", hint: str | None = None) -> None:
    """Print `error: <message>`, then `  <field>: <reason>` per detail, then a hint where one helps."""
    echo(f"{paint('error:', 'red', bold=True)} {prefix}{err.message}", err=True)
    for detail in err.details:
        echo(f"  {paint(detail.field, 'yellow')}: {detail.reason}", err=True)
    hint = hint or _HINTS.get(type(err))
    if hint:
        echo(paint(f"hint: {hint}", "bright_black"), err=True)


def fail(message: str, code: int = USAGE_EXIT, hint: str | None = None) -> click.exceptions.Exit:
    """Report a problem found by the CLI itself (bad usage, unreadable input); raise what it returns."""
    report(RunyardError(message), hint=hint)
    return click.exceptions.Exit(code)


class RunyardGroup(click.Group):
    """Turns the expected failures of any command into a short report and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RunyardError as err:
            report(err)
            raise click.exceptions.Exit(1) from None
        except KeyboardInterrupt:
            echo("", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT) from None


def parse_pairs(pairs: tuple[str, ...] | list[str], option: str) -> dict[str, str]:
    """KEY=VALUE options (--env, -l) into a dict; a malformed one is a usage error naming the option."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"{option} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out
