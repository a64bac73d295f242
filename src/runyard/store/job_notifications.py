"""The job notification outbox (see JobNotificationRow): rows are added in the transaction that ends a
job's run, and taken, retried and marked by services/job_notifications.py."""

from __future__ import annotations

from sqlalchemy import Connection

from runyard.core.resources import Resource
from runyard.store.base import StoreBase


class JobNotificationStore(StoreBase):
    def _job_run_ended(self, conn: Connection, run: Resource) -> None:
        """Called by update_status, in its transaction, when a run owned by a Job has just ended: queue the
        notifications its job asks for. (Written by the notifications change; a no-op until then.)"""
        return None
