"""What every reconciler needs, and the one way they persist a status change."""

from __future__ import annotations

from dataclasses import dataclass

from runyard.core.resources import Resource
from runyard.runtime.base import Runtime
from runyard.services.notify import Notifier
from runyard.settings import ControllerSettings
from runyard.store import Store


@dataclass
class Context:
    store: Store
    runtime: Runtime
    notifier: Notifier
    settings: ControllerSettings
    api_url: str

    def save(self, res: Resource, *events: tuple[str, str] | tuple[str, str, str]) -> Resource:
        """Write status (optimistically: a stale read raises Conflict and the loop retries), then events."""
        saved = self.store.update_status(res, events=events)
        self.notifier.touch(saved.metadata.uid, wake_controller=False)
        return saved
