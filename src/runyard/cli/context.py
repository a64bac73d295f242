"""Global options shared by every command, and the one connection they build on first use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from runyard.rest import Rest


@dataclass
class State:
    url: str | None = None
    token: str | None = None
    project: str | None = None
    home: Path | None = None
    _rest: Rest | None = field(default=None, repr=False)

    def rest(self) -> Rest:
        """Connect as the flags and environment say, auto-starting the embedded server when none is named.
        A project name that cannot exist is refused here, before any request."""
        if self._rest is None:
            from runyard.cli.errors import fail
            from runyard.core.kinds import name_problem
            from runyard.rest import Rest

            project = self.project or os.environ.get("RUNYARD_PROJECT") or "default"
            problem = name_problem(project)
            if problem:
                raise fail(f"project {problem}", hint="`runyard projects` lists the projects")
            url, token = self.url or os.environ.get("RUNYARD_API_URL"), self.token
            if not url:  # the embedded server, started if need be
                from runyard.embedded import resolve_connection

                url, token, project = resolve_connection(self.home, None, token, project)
            self._rest = Rest(url, token, project)
        return self._rest

    def home_dir(self, override: Path | None = None) -> Path:
        from runyard.home import default_home

        return (override or self.home or default_home()).expanduser()


def state(ctx: click.Context) -> State:
    """The State the app callback stored for this invocation."""
    return ctx.ensure_object(State)
