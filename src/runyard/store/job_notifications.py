"""The job notification outbox (see JobNotificationRow): rows are added in the transaction that ends a
job's run, so a notification is never lost to a crash; services/job_notifications.py takes the due ones,
sends them and marks them sent, retried (with the error) or failed. A crash between sending and marking
sends again after the restart: delivery is at least once, and receivers dedupe by the row id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from runyard.core.clock import aware, now
from runyard.core.phases import Phase
from runyard.core.resources import JobNotifications, Resource
from runyard.store.base import EventSpec, StoreBase
from runyard.store.events import EVENTS, event_values
from runyard.store.tables import JobNotificationRow, ResourceRow

NOTIFICATIONS = cast(Table, JobNotificationRow.__table__)
_RESOURCES = cast(Table, ResourceRow.__table__)
EVENTS_BY_PHASE = {Phase.FAILED.value: "run.failed", Phase.SUCCEEDED.value: "run.succeeded"}
# The run's annotations that say how its job fired it (store/jobs.py writes them).
_TRIGGER, _SCHEDULED = "runyard.dev/trigger", "runyard.dev/scheduled-at"
RETENTION = timedelta(days=30)  # how long sent and failed notifications are kept (see prune_notifications)


@dataclass
class Notification:
    """One outbox row. `payload` is what the webhook receives (an e-mail is written from it); `to` is where
    it goes, as the job said when the run ended: the webhook URL, or the e-mail addresses."""

    id: int
    job_uid: str
    project: str
    job_name: str
    run_uid: str
    channel: str  # webhook | email
    event: str  # run.failed | run.succeeded
    payload: dict[str, Any]
    to: str | list[str]
    state: str  # pending | sent | failed
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class JobNotificationStore(StoreBase):
    def _job_run_ended(self, conn: Connection, run: Resource) -> None:
        """Called by update_status, in its transaction, when a run owned by a Job has just ended: queue the
        notifications its job (read in the same transaction) asks for."""
        owner = next((o for o in run.metadata.ownerReferences if o.kind == "Job"), None)
        if owner is None or EVENTS_BY_PHASE.get(str(getattr(run.status, "phase", None) or "")) is None:
            return
        job = conn.execute(
            select(_RESOURCES.c.project, _RESOURCES.c.name, _RESOURCES.c.spec).where(
                _RESOURCES.c.uid == owner.uid
            )
        ).first()
        if job is not None:
            self._queue(conn, run, owner.uid, job.project, job.name, (job.spec or {}).get("notifications"))

    def queue_job_notifications(self, run: Resource, job: Resource) -> int:
        """For a job kept elsewhere (a cluster's custom resources): queue what `job` asks for now that its
        `run` has ended; how many rows were added (none the second time)."""
        spec = getattr(job, "spec", None)
        raw = spec.model_dump(mode="json").get("notifications") if spec is not None else None
        try:
            with self.connect(write=True) as conn:
                return self._queue(conn, run, job.uid, job.metadata.project, job.metadata.name, raw)
        except IntegrityError:  # queued at the same moment by another controller (a leader handing over)
            return 0

    def _queue(
        self, conn: Connection, run: Resource, job_uid: str, project: str, job_name: str, raw: Any
    ) -> int:
        """One row per channel the job's notifications name for this run's end. A Cancelled run notifies
        nobody (a user, a Replace policy or the job's deletion stopped it: nothing to alert on).
        Idempotent: a second terminal write of the run adds nothing."""
        event = EVENTS_BY_PHASE.get(str(getattr(run.status, "phase", None) or ""))
        if event is None or raw is None:
            return 0
        try:
            wanted = JobNotifications.model_validate(raw)
        except ValidationError:  # stored by an older version that accepted it: never fail the run's write
            return 0
        if not (wanted.onFailure if event == "run.failed" else wanted.onSuccess):
            return 0
        channels: dict[str, str | list[str]] = {}
        if wanted.webhook:
            channels["webhook"] = wanted.webhook
        if wanted.email:
            channels["email"] = list(wanted.email)
        payload = self._payload(event, project, job_name, run)
        at, added = now(), 0
        for channel, to in channels.items():
            queued = conn.execute(
                select(NOTIFICATIONS.c.id).where(
                    NOTIFICATIONS.c.run_uid == run.uid, NOTIFICATIONS.c.channel == channel
                )
            ).first()
            if queued is not None:
                continue
            conn.execute(
                insert(NOTIFICATIONS),
                {
                    "job_uid": job_uid,
                    "project": project,
                    "job_name": job_name,
                    "run_uid": run.uid,
                    "channel": channel,
                    "event": event,
                    "payload": {"body": payload, "to": to},
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": at,
                    "created_at": at,
                },
            )
            added += 1
        return added

    @staticmethod
    def _payload(event: str, project: str, job_name: str, run: Resource) -> dict[str, Any]:
        status = run.status.model_dump(mode="json")
        notes = run.metadata.annotations
        return {
            "event": event,
            "job": {"project": project, "name": job_name},
            "run": {
                "name": run.metadata.name,
                "uid": run.uid,
                "phase": status.get("phase"),
                "reason": status.get("reason"),
                "message": status.get("message"),
                "exitCode": status.get("exitCode"),
                "attempts": len(status.get("attempts") or []),
                "startedAt": status.get("startedAt"),
                "finishedAt": status.get("finishedAt"),
                "trigger": notes.get(_TRIGGER),
                "scheduledAt": notes.get(_SCHEDULED),
            },
        }

    def due_notifications(self, at: datetime, limit: int = 50) -> list[Notification]:
        """Pending notifications whose next attempt is due at `at`, oldest first."""
        q = (
            select(NOTIFICATIONS)
            .where(NOTIFICATIONS.c.state == "pending", NOTIFICATIONS.c.next_attempt_at <= at)
            .order_by(NOTIFICATIONS.c.next_attempt_at, NOTIFICATIONS.c.id)
            .limit(limit)
        )
        with self.connect() as conn:
            return [_notification(r) for r in conn.execute(q).all()]

    def job_notifications(self, job_uid: str) -> list[Notification]:
        """A job's notifications, oldest first (what was sent, what is pending, what failed and why)."""
        q = select(NOTIFICATIONS).where(NOTIFICATIONS.c.job_uid == job_uid).order_by(NOTIFICATIONS.c.id)
        with self.connect() as conn:
            return [_notification(r) for r in conn.execute(q).all()]

    def notification_sent(self, id: int, attempts: int, at: datetime) -> None:
        self._mark(id, state="sent", attempts=attempts, sent_at=at)

    def notification_retry(self, id: int, attempts: int, at: datetime, error: str) -> None:
        """The attempt failed with `error`: try again at `at`."""
        self._mark(id, attempts=attempts, next_attempt_at=at, last_error=error[:4000])

    def notification_failed(
        self, id: int, attempts: int, error: str, warning: tuple[Resource, EventSpec] | None = None
    ) -> None:
        """Given up: it is never tried again. `warning`: the event saying so on the job, in the same
        transaction (a crash cannot keep one without the other)."""
        with self.connect(write=True) as conn:
            if (
                self._mark_in(conn, id, state="failed", attempts=attempts, last_error=error[:4000])
                and warning
            ):
                res, event = warning
                conn.execute(insert(EVENTS), [event_values(res.uid, res, event)])

    def _mark(self, id: int, **values: Any) -> None:
        with self.connect(write=True) as conn:
            self._mark_in(conn, id, **values)

    @staticmethod
    def _mark_in(conn: Connection, id: int, **values: Any) -> bool:
        """Update a pending row (sent and failed ones are final); whether it was pending."""
        q = update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == id, NOTIFICATIONS.c.state == "pending")
        return bool(conn.execute(q.values(**values)).rowcount)

    def prune_notifications(self, before: datetime) -> int:
        """Sent and failed notifications that ended before `before` (by when they were queued)."""
        with self.connect(write=True) as conn:
            q = delete(NOTIFICATIONS).where(
                NOTIFICATIONS.c.state != "pending", NOTIFICATIONS.c.created_at < before
            )
            return conn.execute(q).rowcount or 0


def _notification(r: Any) -> Notification:
    payload = r.payload or {}
    return Notification(
        id=r.id,
        job_uid=r.job_uid,
        project=r.project,
        job_name=r.job_name,
        run_uid=r.run_uid,
        channel=r.channel,
        event=r.event,
        payload=payload.get("body", {}),
        to=payload.get("to", []),
        state=r.state,
        attempts=r.attempts,
        next_attempt_at=cast(datetime, aware(r.next_attempt_at)),
        last_error=r.last_error,
        created_at=cast(datetime, aware(r.created_at)),
        sent_at=aware(r.sent_at),
    )
