"""E-mail notifications through a real server and a real SMTP server (aiosmtpd on loopback): the mail a
job's run sends, retried when the SMTP server defers it, and failed at once, with a warning naming the
setting, when no SMTP server is configured."""

from __future__ import annotations

from tests.notifications.notify_support import (
    fire,
    job_events,
    notify_server,
    put_job,
    smtp_server,
    store_url_of,
    wait_for,
)
from tests.support import wait_phase

from runyard.store import Store


def test_a_succeeded_run_is_mailed_and_a_deferral_retried(tmp_path):
    with smtp_server(defer_first=1) as (box, port):
        env = {"RUNYARD_NOTIFY_SMTP_HOST": "127.0.0.1", "RUNYARD_NOTIFY_SMTP_PORT": str(port)}
        env["RUNYARD_NOTIFY_SMTP_FROM"] = "jobs@runyard.example"
        srv = notify_server(tmp_path / "home", "sqlite", **env)
        try:
            to = ["ops@example.org", "ml@example.org"]
            job = put_job(srv, "nightly", "echo done", email=to, onSuccess=True)
            run = fire(srv, "nightly")
            assert wait_phase(srv.api(), run, {"Succeeded", "Failed"})["status"]["phase"] == "Succeeded"
            wait_for("the mail", lambda: box.messages)
            (rcpts, msg) = box.messages[0]
            assert sorted(rcpts) == sorted(to) and box.tries == 2  # deferred once (451), then taken
            assert msg["Subject"] == f"[runyard] job nightly: run {run} succeeded"
            assert msg["From"] == "jobs@runyard.example"
            assert msg["X-Runyard-Event"] == "run.succeeded"
            text = msg.get_payload(decode=True).decode()
            assert f"Run {run} of job nightly (project default) succeeded." in text
            assert "Exit code: 0" in text and "Trigger:   manual" in text
            store = Store(store_url_of(srv))
            try:
                (row,) = wait_for(
                    "the row marked sent",
                    lambda: [r for r in store.job_notifications(job.uid) if r.state == "sent"],
                )
            finally:
                store.close()
            assert row.attempts == 2 and msg["X-Runyard-Delivery"] == str(row.id)
            assert row.last_error and "451" in row.last_error
            assert len(box.messages) == 1
        finally:
            srv.stop()


def test_without_an_smtp_server_the_mail_fails_at_once_saying_what_to_set(tmp_path):
    srv = notify_server(tmp_path / "home", "sqlite", RUNYARD_NOTIFY_MAX_ATTEMPTS="5")
    try:
        job = put_job(srv, "report", "exit 2", email=["ops@example.org"])
        run = fire(srv, "report")
        (event,) = wait_for("the warning", lambda: job_events(srv, "report", "NotificationFailed"))
        assert event["type"] == "Warning"
        assert "e-mail" in event["message"] and run in event["message"]
        assert "RUNYARD_NOTIFY_SMTP_HOST" in event["message"] and "after 1 attempt:" in event["message"]
        store = Store(store_url_of(srv))
        try:
            (row,) = store.job_notifications(job.uid)
        finally:
            store.close()
        assert (row.state, row.attempts, row.event) == ("failed", 1, "run.failed")
    finally:
        srv.stop()
