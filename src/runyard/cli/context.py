"""Global options shared by every command, and the one Client they build on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from runyard.client import Client


@dataclass
class State:
    url: str | None = None
    token: str | None = None
    project: str | None = None
    home: Path | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """Connect as the flags and environment say, auto-starting the embedded server when none is named."""
        if self._client is None:
            from runyard.client import Client
            from runyard.embedded import resolve_connection

            url, token, project = resolve_connection(self.home, self.url, self.token, self.project)
            self._client = Client(url, token, project)
        return self._client

    def home_dir(self, override: Path | None = None) -> Path:
        from runyard.settings import default_home

        return (override or self.home or default_home()).expanduser()


def state(ctx: typer.Context) -> State:
    """The State the app callback stored for this invocation."""
    return ctx.ensure_object(State)
