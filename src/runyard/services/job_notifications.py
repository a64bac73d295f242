"""Delivers the job notification outbox (store/job_notifications.py): signed webhooks and e-mail, retried
with exponential backoff, then given up with a Warning event NotificationFailed on the job.

Delivery is at least once: a row is marked sent after the receiver accepted it, so a server killed in
between sends it again after its restart. Receivers dedupe by X-Runyard-Delivery (the row id; e-mail
carries it as a header too).

A webhook is a JSON POST of {event, job, run} with the headers X-Runyard-Event, X-Runyard-Delivery and
X-Runyard-Signature "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>' keyed by the job's secret>"
(GET /projects/P/jobs/J/webhook-secret). A receiver recomputes it over the raw body and rejects an old t.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import httpx

from runyard.core.clock import now
from runyard.core.phases import Reason
from runyard.core.resources import Job
from runyard.settings import NotifySettings, env_name
from runyard.store import Store
from runyard.store.job_notifications import RETENTION, Notification

log = logging.getLogger("runyard.notifications")
POLL_SECONDS = 0.5  # how often the outbox is looked at: a run's notification leaves within this
PRUNE_EVERY = 3600.0  # seconds between removals of notifications sent or failed over RETENTION ago
PARALLEL = 4  # deliveries at once, so that one slow receiver does not hold up the others
MAX_BACKOFF_SECONDS = 24 * 3600.0  # the doubling stops here (max_attempts may be up to 100)


class GiveUp(Exception):
    """An attempt that no retry can fix (no SMTP server is configured)."""


def signature(secret: str, body: bytes, at: int) -> str:
    """The X-Runyard-Signature header of `body` sent at unix time `at`."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


class Jobs(Protocol):
    """Where the jobs are, for a sender whose jobs are not in its store (a cluster's custom resources)."""

    def job(self, uid: str) -> Job | None: ...

    def warn(self, job: Job, reason: str, message: str) -> None: ...


class NotificationSender:
    """A controller worker (it runs only where the controller lock is held, or the operator leads): one
    thread polling the outbox. `jobs`: where the jobs are when not in `store`."""

    def __init__(
        self,
        store: Store,
        settings: NotifySettings,
        clock: Callable[[], datetime] = now,
        jobs: Jobs | None = None,
    ):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.jobs = jobs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pruned = 0.0
        self._store_down = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="runyard-notify")
        self._thread = threading.Thread(target=self._run, name="runyard-notifications", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_seconds + 5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
                self._prune()
                if self._store_down:
                    log.info("job notifications: the store answers again")
                self._store_down = False
            except Exception as err:  # the store is down: try again at the next poll
                if not self._store_down:
                    log.warning("job notifications: cannot read the outbox (%s); retrying", err)
                self._store_down = True
            self._stop.wait(POLL_SECONDS)

    def deliver_due(self) -> int:
        """Send what is due now (in parallel, each at most once in this pass); how many were tried."""
        due = self.store.due_notifications(self.clock())
        if due and self._pool is not None:
            list(self._pool.map(self._attempt, due))
        elif due:
            for row in due:
                self._attempt(row)
        return len(due)

    def _prune(self) -> None:
        if time.monotonic() - self._pruned >= PRUNE_EVERY:
            self._pruned = time.monotonic()
            self.store.prune_notifications(self.clock() - RETENTION)

    def _attempt(self, row: Notification) -> None:
        """One attempt. What the store says (the job, its secret) is read first: a store outage is no
        failed attempt, it ends the pass and the row stays due."""
        attempts = row.attempts + 1
        job = self.jobs.job(row.job_uid) if self.jobs is not None else self.store.get_uid(row.job_uid)
        if not isinstance(job, Job) or job.metadata.deletionTimestamp is not None:
            self._give_up(row, attempts, f"job {row.job_name!r} was deleted before its notification was sent")
            return
        secret = self.store.webhook_secret(job) if row.channel == "webhook" else ""
        try:
            if row.channel == "webhook":
                self._post(row, secret)
            elif row.channel == "email":
                self._mail(row)
            else:
                raise GiveUp(f"unknown channel {row.channel!r}")
        except GiveUp as err:
            self._give_up(row, attempts, str(err), job)
            return
        except Exception as err:
            error = _describe(err)
        else:
            self.store.notification_sent(row.id, attempts, self.clock())
            return
        if attempts >= self.settings.max_attempts:
            self._give_up(row, attempts, error, job)
            return
        wait = min(self.settings.backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        log.info("job notification %d (%s) attempt %d failed: %s", row.id, row.channel, attempts, error)
        self.store.notification_retry(row.id, attempts, self.clock() + timedelta(seconds=wait), error)

    def _give_up(self, row: Notification, attempts: int, error: str, job: Job | None = None) -> None:
        """Never tried again; the job (if it is still there) gets a warning saying which and why, written
        with the row."""
        run = row.payload.get("run", {}).get("name", row.run_uid)
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        what = "webhook" if row.channel == "webhook" else "e-mail"
        message = f"{what} notification of run {run} ({row.event}) failed {tries}: {error}"
        log.warning("job %s/%s: %s", row.project, row.job_name, message)
        if self.jobs is not None:  # the event goes where the job is, after the row
            self.store.notification_failed(row.id, attempts, error)
            if job is not None:
                self.jobs.warn(job, Reason.NOTIFICATION_FAILED, message)
            return
        warning = (job, (Reason.NOTIFICATION_FAILED, message, "Warning")) if job is not None else None
        self.store.notification_failed(row.id, attempts, error, warning)

    def _post(self, row: Notification, secret: str) -> None:
        body = json.dumps(row.payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "runyard-notifications",
            "X-Runyard-Event": row.event,
            "X-Runyard-Delivery": str(row.id),
            "X-Runyard-Signature": signature(secret, body, int(time.time())),
        }
        url = str(row.to)
        resp = httpx.post(url, content=body, headers=headers, timeout=self.settings.timeout_seconds)
        if not resp.is_success:
            raise RuntimeError(f"HTTP {resp.status_code} from {url}: {resp.text[:200]!r}")

    def _mail(self, row: Notification) -> None:
        s = self.settings
        if not s.smtp_host:
            raise GiveUp(
                f"no SMTP server is configured: set {env_name(NotifySettings, 'smtp_host')} "
                "(and its port) on the server and restart it"
            )
        msg = email_message(row, s.smtp_from)
        if s.smtp_security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.timeout_seconds, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_seconds)
        with smtp:
            if s.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            refused = smtp.send_message(msg)
        if refused:  # some took it: sending again would repeat it to them
            log.warning("job notification %d: the SMTP server refused %s", row.id, ", ".join(refused))


def email_message(row: Notification, sender: str) -> EmailMessage:
    """The plain-text mail of a notification."""
    job, run = row.payload.get("job", {}), row.payload.get("run", {})
    outcome = "failed" if row.event == "run.failed" else "succeeded"
    msg = EmailMessage()
    msg["Subject"] = f"[runyard] job {job.get('name')}: run {run.get('name')} {outcome}"
    msg["From"] = sender
    msg["To"] = ", ".join(row.to) if isinstance(row.to, list) else row.to
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("runyard")
    msg["X-Runyard-Event"] = row.event
    msg["X-Runyard-Delivery"] = str(row.id)
    trigger = run.get("trigger") or "?"
    if run.get("scheduledAt"):
        trigger += f" (scheduled for {run['scheduledAt']})"
    lines = [
        f"Run {run.get('name')} of job {job.get('name')} (project {job.get('project')}) {outcome}.",
        "",
        f"Phase:     {run.get('phase')}" + (f" ({run['reason']})" if run.get("reason") else ""),
        *([f"Message:   {run['message']}"] if run.get("message") else []),
        *([f"Exit code: {run['exitCode']}"] if run.get("exitCode") is not None else []),
        f"Attempts:  {run.get('attempts')}",
        f"Trigger:   {trigger}",
        f"Started:   {run.get('startedAt') or '-'}",
        f"Finished:  {run.get('finishedAt') or '-'}",
        "",
        f"Its logs: runyard --project {job.get('project')} logs {run.get('name')}",
    ]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def _describe(err: Exception) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, httpx.HTTPError) and not isinstance(err, httpx.HTTPStatusError):
        return f"{type(err).__name__}: {text}"
    return text
