"""Options several commands share, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from runyard.cli.output import Output

OUTPUTS = tuple(str(o) for o in Output)
LABELS = click.option(
    "--selector",
    "-l",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label to match; repeatable (all must match).",
)
SORT = click.option(
    "--sort",
    metavar="FIELD",
    help="Order by a column: name, phase, age (youngest first), exit, duration... (default: newest first).",
)


def output_option(
    help: str = "table, wide (more columns, cells whole), json or yaml.",
    default: str | None = "table",
    choices: tuple[str, ...] = OUTPUTS,
) -> Callable[[Any], Any]:
    """-o/--output, handed to the command as an Output (or None when absent and without default)."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(choices, case_sensitive=False),
        default=default,
        show_default=default is not None,
        callback=lambda _ctx, _param, value: None if value is None else Output(value.lower()),
        help=help,
    )
