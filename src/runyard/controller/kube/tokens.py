"""Run tokens on a cluster: issued in the platform's database (tokens stay in PostgreSQL, as on one machine)
when a pod is launched, revoked when the Run ends. A pod's init container fetches the run's snapshot with
it, and the run reports its tracking data with it."""

from __future__ import annotations

from runyard.core.resources import Run
from runyard.services.auth import issue_token
from runyard.store import Store


class StoreTokens:
    def __init__(self, store: Store):
        self.store = store

    def issue(self, run: Run, attempt: int) -> str:
        m = run.metadata
        return issue_token(self.store, f"run {m.name} attempt {attempt}", "run", m.project, run.uid)

    def revoke(self, run: Run) -> None:
        """Every token of the run: its process has ended, nothing of it calls the API any more."""
        self.store.revoke_run_tokens(run.uid)
