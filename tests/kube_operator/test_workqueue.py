"""The operator's work queue: keys coalesce, a key in work is never handed out twice, delayed keys return."""

from __future__ import annotations

import time

from runyard.controller.kube.workqueue import WorkQueue


def test_a_burst_of_adds_is_one_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert [q.get(0), q.get(0), q.get(0)] == ["a", "b", None]


def test_a_key_added_while_in_work_comes_back_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")
    assert q.get(0) is None  # not to a second worker while the first holds it
    q.done("a")
    assert q.get(0) == "a"


def test_add_after_returns_the_key_later() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.1)
    assert q.get(0) is None
    started = time.monotonic()
    assert q.get(2) == "a"
    assert time.monotonic() - started >= 0.05


def test_close_wakes_a_waiting_get() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.close()
    assert q.get(5) is None
