"""Webhook notifications through a real server: a job's failed run is POSTed to a loopback receiver,
signed with the secret the API gives, retried with backoff under one delivery id until accepted, and given
up after RUNYARD_NOTIFY_MAX_ATTEMPTS with a NotificationFailed warning on the job."""

from __future__ import annotations

import httpx
import pytest
from tests.notifications.notify_support import (
    fire,
    job_events,
    notify_server,
    put_job,
    receiver,
    store_url_of,
    wait_for,
)
from tests.support import API, wait_phase

from runyard.store import Store


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


def test_a_failed_run_is_posted_signed_and_retried_until_the_receiver_takes_it(tmp_path, backend):
    srv = notify_server(tmp_path / "home", backend, RUNYARD_NOTIFY_MAX_ATTEMPTS="5")
    try:
        with receiver(fail_first=2) as rec:
            job = put_job(srv, "nightly", "echo working; exit 3", webhook=rec.url)
            got = srv.api().get("/jobs/nightly/webhook-secret")
            assert got.status_code == 200, got.text
            rec.secret = got.json()["secret"]
            assert len(rec.secret) >= 32
            run = fire(srv, "nightly")
            ended = wait_phase(srv.api(), run, {"Failed", "Succeeded"})
            assert ended["status"]["phase"] == "Failed"

            wait_for("the third delivery", lambda: len(rec.deliveries) >= 3)
            assert all(d.signed for d in rec.deliveries), "a delivery's signature did not check out"
            assert len({d.headers["x-runyard-delivery"] for d in rec.deliveries}) == 1  # one id: dedupe by it
            first = rec.deliveries[0]
            assert first.headers["content-type"] == "application/json"
            assert first.headers["x-runyard-event"] == "run.failed"
            body = first.json
            assert body["event"] == "run.failed"
            assert body["job"] == {"project": "default", "name": "nightly"}
            assert body["run"]["name"] == run and body["run"]["uid"] == ended["metadata"]["uid"]
            assert body["run"]["phase"] == "Failed" and body["run"]["exitCode"] == 3
            assert body["run"]["attempts"] == 1 and body["run"]["trigger"] == "manual"
            assert body["run"]["finishedAt"] and body["run"]["startedAt"]

            store = Store(store_url_of(srv))
            try:
                sent = wait_for("the row marked sent", lambda: _row(store, job.uid, "sent"))
            finally:
                store.close()
            assert sent.attempts == 3 and str(sent.id) == first.headers["x-runyard-delivery"]
            assert sent.last_error and "HTTP 500" in sent.last_error  # what the retries were for
            assert len(rec.deliveries) == 3  # delivered: never sent again
            assert job_events(srv, "nightly", "NotificationFailed") == []
    finally:
        srv.stop()


def test_a_receiver_that_never_accepts_is_given_up_with_a_warning_event(tmp_path):
    srv = notify_server(tmp_path / "home", "sqlite", RUNYARD_NOTIFY_MAX_ATTEMPTS="3")
    try:
        with receiver(status=503) as rec:
            job = put_job(srv, "flaky", "exit 1", webhook=rec.url)
            rec.secret = srv.api().get("/jobs/flaky/webhook-secret").json()["secret"]
            run = fire(srv, "flaky")
            warning = wait_for(
                "a NotificationFailed event", lambda: job_events(srv, "flaky", "NotificationFailed")
            )
            assert len(rec.deliveries) == 3 and all(d.signed for d in rec.deliveries)
            assert warning[0]["type"] == "Warning"
            message = warning[0]["message"]
            assert (
                "webhook" in message and run in message and "3 attempts" in message and "HTTP 503" in message
            )
            store = Store(store_url_of(srv))
            try:
                (row,) = store.job_notifications(job.uid)
            finally:
                store.close()
            assert (row.state, row.attempts) == ("failed", 3)
    finally:
        srv.stop()


def test_a_success_is_not_notified_unless_on_success_is_set(tmp_path):
    srv = notify_server(tmp_path / "home", "sqlite")
    try:
        with receiver() as rec:
            job = put_job(srv, "quiet", 'test "$FAIL" != 1', webhook=rec.url)  # onSuccess is off by default
            rec.secret = srv.api().get("/jobs/quiet/webhook-secret").json()["secret"]
            ok = fire(srv, "quiet")
            assert wait_phase(srv.api(), ok, {"Succeeded", "Failed"})["status"]["phase"] == "Succeeded"
            failed = fire(srv, "quiet", FAIL="1")
            # Had the success been queued, it would have gone out first: the outbox is sent oldest first.
            wait_for("the failure's delivery", lambda: rec.deliveries)
            (got,) = rec.deliveries
            assert got.signed and got.json["event"] == "run.failed" and got.json["run"]["name"] == failed
            store = Store(store_url_of(srv))
            try:
                assert [(r.event, r.channel) for r in store.job_notifications(job.uid)] == [
                    ("run.failed", "webhook")
                ]
            finally:
                store.close()
    finally:
        srv.stop()


def test_the_webhook_secret_needs_write_access_and_an_existing_job(tmp_path):
    srv = notify_server(tmp_path / "home", "sqlite")
    try:
        api = srv.api()
        assert api.get("/jobs/nope/webhook-secret").status_code == 404
        put_job(srv, "signed", "true", webhook="https://example.org/hook")
        first = api.get("/jobs/signed/webhook-secret").json()["secret"]
        assert api.get("/jobs/signed/webhook-secret").json()["secret"] == first  # stable until deleted
        made = {"name": "v", "role": "viewer", "project": "default"}
        viewer = httpx.post(srv.url + API + "/tokens", json=made, headers=api.headers)
        assert viewer.status_code == 201, viewer.text
        forbidden = srv.api(token=viewer.json()["token"]).get("/jobs/signed/webhook-secret")
        assert forbidden.status_code == 403, forbidden.text
    finally:
        srv.stop()


def _row(store: Store, job_uid: str, state: str):
    rows = [r for r in store.job_notifications(job_uid) if r.state == state]
    return rows[0] if rows else None
