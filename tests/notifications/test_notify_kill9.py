"""At least once across a crash: a server killed with SIGKILL while its webhook POST is in flight (sent,
not yet marked sent) delivers the notification again after its restart, under the same delivery id."""

from __future__ import annotations

import os

import pytest
from tests.notifications.notify_support import (
    FAST,
    fire,
    notify_server,
    put_job,
    receiver,
    store_url_of,
    wait_for,
)
from tests.support import ServerProcess

from runyard.store import Store


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_notification_in_flight_when_the_server_is_killed_is_delivered_after_the_restart(tmp_path, backend):
    srv = notify_server(tmp_path / "home", backend)
    restarted: ServerProcess | None = None
    store = Store(store_url_of(srv))
    try:
        with receiver() as rec:
            rec.hold.clear()  # the first POST is kept open: the server dies waiting for its answer
            job = put_job(srv, "nightly", "exit 1", webhook=rec.url)
            rec.secret = srv.api().get("/jobs/nightly/webhook-secret").json()["secret"]
            fire(srv, "nightly")
            wait_for("the first delivery", lambda: rec.deliveries)
            srv.kill9()
            (row,) = store.job_notifications(job.uid)
            assert (row.state, row.attempts) == ("pending", 0)  # sent, never marked: the outbox still has it
            rec.hold.set()

            restarted = ServerProcess(srv.home, srv.store_url, env={**os.environ, **FAST}).start()
            wait_for("the delivery after the restart", lambda: len(rec.deliveries) >= 2)
            first, again = rec.deliveries[:2]
            assert first.signed and again.signed
            assert first.headers["x-runyard-delivery"] == again.headers["x-runyard-delivery"] == str(row.id)
            assert first.json == again.json
            (sent,) = wait_for(
                "the row marked sent",
                lambda: [r for r in store.job_notifications(job.uid) if r.state == "sent"],
            )
            assert sent.attempts == 1 and len(rec.deliveries) == 2
    finally:
        store.close()
        srv.stop()
        if restarted is not None:
            restarted.stop()
