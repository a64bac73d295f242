"""`apply` of a document without a resourceVersion is declarative: a controller writing the object's status
between apply's read and its write must not turn the apply into a 409 (CI saw one on a Job the job
reconciler had just written). Real SQLite store, a real thread writing status meanwhile."""

from __future__ import annotations

import threading

from runyard.core.resources import Job
from runyard.services.auth import Principal
from runyard.services.resources import ApplyOutcome, apply_resource
from runyard.store import Store

WHO = Principal("t", "tester", "admin", None)


def job(schedule: str) -> Job:
    return Job.model_validate(
        {
            "metadata": {"name": "nightly", "project": "default"},
            "spec": {"schedule": schedule, "template": {"command": "true"}},
        }
    )


def test_an_apply_is_not_refused_because_the_status_changed_meanwhile(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    store.ensure_project("default")
    apply_resource(store, WHO, job("0 3 * * *"))
    stop = threading.Event()

    def write_status() -> None:
        n = 0
        while not stop.is_set():
            current = store.get(Job, "default", "nightly")
            current.status.message = f"status write {n}"
            n += 1
            try:
                store.update_status(current)
            except Exception:
                continue

    writer = threading.Thread(target=write_status)
    writer.start()
    try:
        for minute in range(40):
            _, outcome = apply_resource(store, WHO, job(f"{minute} 4 * * *"))
            assert outcome is ApplyOutcome.CONFIGURED
    finally:
        stop.set()
        writer.join()
    assert store.get(Job, "default", "nightly").spec.schedule == "39 4 * * *"
