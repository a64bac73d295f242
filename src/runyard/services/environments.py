"""Environments: a project's dependencies built once, with uv, into an immutable content-addressed
virtualenv, reused by every run that needs it. STUB (issue 7)."""

from __future__ import annotations


class Environments:
    """The environments service (builds in background threads; records in the store)."""

    def close(self) -> None:
        """Stop building; a build cut short is started again by the next server."""
