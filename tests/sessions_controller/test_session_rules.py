"""The reclamation rules of the session controller, with an injected clock (no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runyard.controller.sessions import next_look, reclaim
from runyard.core.resources import SessionSpec, SessionStatus

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_an_idle_session_is_warned_once_then_reclaimed():
    spec = SessionSpec(idleTimeoutSeconds=3600)
    st = SessionStatus(startedAt=T0, readyAt=T0, lastActivity=T0)
    assert reclaim(at(3299), spec, st) is None
    reason, text = reclaim(at(3300), spec, st)  # 5 minutes before
    assert reason == "IdleSoon" and "10:00:00" in text
    st.idleWarnedAt = at(3300)
    assert reclaim(at(3400), spec, st) is None  # warned already
    reason, text = reclaim(at(3600), spec, st)
    assert reason == "Idle" and "3600 s" in text


def test_activity_postpones_reclamation_and_a_later_idle_period_warns_again():
    spec = SessionSpec(idleTimeoutSeconds=600)
    st = SessionStatus(startedAt=T0, readyAt=T0, lastActivity=T0, idleWarnedAt=at(540))
    st.lastActivity = at(590)  # used after the warning
    assert reclaim(at(1000), spec, st) is None
    assert reclaim(at(1130), spec, st)[0] == "IdleSoon"  # 540 s after the last use: warned again
    assert reclaim(at(1190), spec, st)[0] == "Idle"


def test_the_maximum_lifetime_wins_over_activity():
    spec = SessionSpec(maxLifetimeSeconds=86400)
    st = SessionStatus(startedAt=T0, readyAt=T0, lastActivity=at(86399))
    assert reclaim(at(86399), spec, st) is None
    assert reclaim(at(86400), spec, st)[0] == "MaxLifetime"


def test_the_controller_looks_again_when_the_next_rule_is_due():
    spec = SessionSpec(idleTimeoutSeconds=100, maxLifetimeSeconds=10_000)
    st = SessionStatus(startedAt=T0, readyAt=T0, lastActivity=T0)
    assert next_look(at(0), spec, st) == 15.0  # at most RUNNING_POLL
    assert next_look(at(85), spec, st) == 5.0  # the warning is due at 90 s
    assert next_look(at(95), spec, st) == 5.0  # the reclamation at 100 s
    assert next_look(at(101), spec, st) == 15.0  # past both: the lifetime is far
