"""Phase transitions with their conditions and events, in one place for every reconciler."""

from __future__ import annotations

from datetime import datetime

from runyard.core.clock import now
from runyard.core.phases import Phase
from runyard.core.resources import Condition, ConditionStatus, Run

# Which condition a phase sets, and to what.
PHASE_CONDITION: dict[Phase, tuple[str, ConditionStatus]] = {
    Phase.QUEUED: ("Admitted", "True"),
    Phase.STARTING: ("Started", "False"),
    Phase.RUNNING: ("Started", "True"),
    Phase.SUCCEEDED: ("Completed", "True"),
    Phase.FAILED: ("Completed", "True"),
    Phase.CANCELLED: ("Completed", "True"),
}


def set_condition(
    conditions: list[Condition], type_: str, status: ConditionStatus, reason: str, message: str
) -> None:
    for c in conditions:
        if c.type == type_:
            if (c.status, c.reason, c.message) != (status, reason, message):
                if c.status != status:
                    c.lastTransitionTime = now()
                c.status, c.reason, c.message = status, reason, message
            return
    conditions.append(
        Condition(type=type_, status=status, reason=reason, message=message, lastTransitionTime=now())
    )


def transition(run: Run, phase: Phase, reason: str, message: str, at: datetime | None = None) -> None:
    """Move a run to `phase` (checked against the table) and record why; the caller persists it."""
    st = run.status
    if st.phase != phase and not st.phase.can_become(phase):
        raise ValueError(f"run {run.metadata.name}: {st.phase} cannot become {phase}")
    st.phase, st.reason, st.message = phase, reason, message
    cond = PHASE_CONDITION.get(phase)
    if cond:
        set_condition(st.conditions, cond[0], cond[1], reason, message)
    if phase.is_terminal():
        st.finishedAt = at or now()
        st.nextAttemptAt = None
