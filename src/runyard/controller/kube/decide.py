"""What the operator does for an Experiment and for a Run, decided from cached objects alone (pure: no API
calls here, so every rule is testable without a cluster and the operator's calls stay countable).

A Run's status is written twice in a normal life (Running, then its end) and its Experiment's once (the
end): with the Run's and the Pod's creation that is five calls per Run, the target. The Experiment does not
mirror the intermediate Running (its Run shows it): that write would be a sixth. Phases follow the local
controller's table (core.phases), walked through the steps a pod skips (a Run seen Running was admitted
and started), so conditions read the same on both runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from runyard.controller.attempts import attempt_env, attempt_spec
from runyard.controller.experiments import mirrored_status
from runyard.controller.status import set_condition, transition
from runyard.core.phases import TERMINAL, Phase, Reason
from runyard.core.resources import (
    Attempt,
    Experiment,
    ObjectMeta,
    OwnerReference,
    Run,
    RunSpec,
    RunStatus,
    WorkloadStatus,
)
from runyard.runtime.base import AttemptState, LaunchSpec, Observed

POD_DELETED = "pod deleted"
_LAUNCHED = (Phase.STARTING, Phase.RUNNING)
_WALK = (Phase.PENDING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING)
_STEP = {
    Phase.QUEUED: (Reason.ADMITTED, "admitted: the cluster's scheduler places it"),
    Phase.STARTING: (Reason.LAUNCHING, "its pod was created"),
}


def run_for(exp: Experiment) -> Run:
    """An Experiment's one Run: named as the Experiment (as the local controller names it), owned by it so
    that deleting the Experiment deletes the Run and, through the Run, its pods."""
    m = exp.metadata
    return Run(
        metadata=ObjectMeta(
            name=m.name,
            project=m.project,
            labels=m.labels,
            ownerReferences=[OwnerReference(kind="Experiment", name=m.name, uid=m.uid or "")],
        ),
        spec=RunSpec(**exp.spec.model_dump()),
    )


def experiment_status(exp: Experiment, run: Run | None, had_run: bool = False) -> WorkloadStatus | None:
    """The Experiment's status to write, or None when there is nothing new to say. `had_run`: its Run was
    seen, though the status does not list it yet."""
    st = exp.status
    if run is None:
        if (st.runs or had_run) and st.reason != Reason.RUN_DELETED:  # an Experiment runs once
            runs = st.runs or [exp.metadata.name]
            phase = st.phase if st.phase in TERMINAL else Phase.CANCELLED.value
            msg = f"its run {runs[-1]} was deleted; the experiment is not run again"
            update = {"phase": phase, "reason": Reason.RUN_DELETED, "message": msg, "runs": runs}
            return st.model_copy(update=update)
        return None
    if not run.status.phase.is_terminal():
        return None
    status = mirrored_status(exp, run)
    return None if status == st else status


def current_attempt(run: Run) -> int:
    """The attempt the run is on: the last recorded while it starts or runs, else the next to launch."""
    st = run.status
    n = len(st.attempts)
    return n if st.phase in (Phase.STARTING, Phase.RUNNING) and n else n + 1


@dataclass
class RunStep:
    """What to do for a Run: write `status`, launch attempt `launch`, stop its pod, look again `after`."""

    status: RunStatus | None = None
    launch: int | None = None
    stop: bool = False
    after: float | None = None
    events: list[tuple[str, str]] = field(default_factory=list)


def step_run(run: Run, obs: Observed | None, handle: dict[str, Any], now: datetime) -> RunStep:
    """`obs`: the current attempt's pod as observed; LOST when it was seen and is gone; None when there is
    none (not created yet, or gone before anything was recorded of it: then it is launched again)."""
    if run.metadata.deletionTimestamp is not None or run.status.phase.is_terminal():
        return RunStep()
    run = run.model_copy(deep=True)
    st, stopping = run.status, run.spec.stopRequested
    if run.spec.trackingOnly:  # no process: its client ends it; a stop cancels it (as locally)
        if not stopping:
            return RunStep()
        _advance(run, Phase.CANCELLED, Reason.STOPPED, "stopped on request (a tracking-only run)", now)
        return RunStep(status=st)
    if obs is not None and obs.state == AttemptState.LOST or obs is None and st.phase in _LAUNCHED:
        # its pod was there and is gone (LOST: seen by this process; else its status recorded the pod)
        if stopping:
            return _ended(run, None, Reason.STOPPED, "stopped on request", now)
        return _ended(run, None, Reason.PROCESS_LOST, (obs.message if obs else "") or POD_DELETED, now)
    if obs is None:
        if stopping:
            _advance(run, Phase.CANCELLED, Reason.STOPPED, "stopped before it started", now)
            return RunStep(status=st)
        if st.nextAttemptAt is not None and st.nextAttemptAt > now:
            return RunStep(after=(st.nextAttemptAt - now).total_seconds())
        return RunStep(launch=current_attempt(run))
    n = current_attempt(run)
    if stopping and obs.state in (AttemptState.STARTING, AttemptState.RUNNING):
        return RunStep(stop=True)
    if obs.state == AttemptState.STARTING:
        return _starting(run, n, obs, handle, now)
    if obs.state == AttemptState.RUNNING:
        if st.phase == Phase.RUNNING:
            return RunStep()
        _record_attempt(run, n, obs, handle, now)
        _advance(run, Phase.RUNNING, Reason.STARTED, f"attempt {n} started")
        return RunStep(status=st)  # Kubernetes ends it at activeDeadlineSeconds
    _record_attempt(run, n, obs, handle, now)  # EXITED: perhaps before a look saw it running
    return _exited(run, obs, now)


def launch_failed(run: Run, message: str, now: datetime) -> RunStep:
    """The API refused the attempt's pod (invalid, forbidden, over quota): the attempt ends LaunchFailed,
    retried per the retry policy as any failed attempt."""
    run = run.model_copy(deep=True)
    n = current_attempt(run)
    if len(run.status.attempts) < n:
        run.status.attempts.append(Attempt(attempt=n))
    return _ended(run, None, Reason.LAUNCH_FAILED, message, now)


def _starting(run: Run, n: int, obs: Observed, handle: dict[str, Any], now: datetime) -> RunStep:
    """A pod not running yet. Only a complaint (the scheduler's, or an image that cannot be pulled) is
    worth a write, once per message."""
    st = run.status
    if not obs.message or st.message == obs.message:
        return RunStep()
    _record_attempt(run, n, obs, handle, now)
    _advance(run, Phase.STARTING, Reason.LAUNCHING, f"launching attempt {n}")
    unschedulable = obs.message.startswith(Reason.UNSCHEDULABLE)
    reason = Reason.UNSCHEDULABLE if unschedulable else Reason.LAUNCHING
    st.reason, st.message = reason, obs.message
    set_condition(st.conditions, "PodScheduled", "False" if unschedulable else "True", reason, obs.message)
    return RunStep(status=st, events=[(reason, obs.message)])


def _record_attempt(run: Run, n: int, obs: Observed, handle: dict[str, Any], now: datetime) -> None:
    st = run.status
    if len(st.attempts) < n:
        st.attempts.append(Attempt(attempt=n, handle=handle))
    att = st.attempts[-1]
    att.handle = att.handle or handle
    att.startedAt = att.startedAt or obs.started_at or now
    st.startedAt = st.startedAt or att.startedAt
    st.nextAttemptAt = None
    st.limits = st.limits or obs.limits  # how the pod is limited, and isolated: as the local runtime says
    st.sandbox = st.sandbox or obs.sandbox


def _exited(run: Run, obs: Observed, now: datetime) -> RunStep:
    code = obs.exit_code
    text = f"exited with code {code}" if code is not None else "no exit code"
    if run.spec.stopRequested:
        return _ended(run, code, Reason.STOPPED, f"stopped on request ({text})", now, obs)
    if code == 0:
        return _ended(run, code, Reason.COMPLETED, text, now, obs)
    if obs.message:
        text = f"{text}: {obs.message}"
    if obs.oom_killed:
        return _ended(run, code, Reason.OUT_OF_MEMORY, text, now, obs)
    if "activeDeadlineSeconds" in (obs.message or ""):  # the runtime's word for the pod's deadline
        return _ended(run, code, Reason.DEADLINE_EXCEEDED, f"timed out ({text})", now, obs)
    return _ended(run, code, Reason.ERROR, text, now, obs)


def _ended(
    run: Run, code: int | None, reason: str, msg: str, now: datetime, obs: Observed | None = None
) -> RunStep:
    """How the attempt ended; then succeed, be cancelled, fail, or wait for a retry per the retry policy
    (the same rules as the local controller's)."""
    st = run.status
    if not st.attempts:
        st.attempts.append(Attempt(attempt=1))
    att = st.attempts[-1]
    att.exitCode, att.reason = code, reason
    att.finishedAt = (obs.finished_at if obs else None) or now
    st.exitCode = code
    if reason == Reason.COMPLETED:
        _advance(run, Phase.SUCCEEDED, reason, msg, att.finishedAt)
        return RunStep(status=st)
    if reason == Reason.STOPPED:
        _advance(run, Phase.CANCELLED, reason, msg, att.finishedAt)
        return RunStep(status=st)
    retries = run.spec.retryPolicy
    if len(st.attempts) <= retries.maxRetries:
        backoff = retries.delay(len(st.attempts))
        note = f"attempt {att.attempt} {msg}; retrying in {backoff:g}s"
        note += f" ({len(st.attempts) + 1}/{retries.maxRetries + 1})"
        _advance(run, Phase.QUEUED, Reason.RETRYING, note)
        st.nextAttemptAt = now + timedelta(seconds=backoff)
        return RunStep(status=st, after=backoff, events=[(Reason.RETRYING, note)])
    if len(st.attempts) > 1:
        msg = f"{msg} (attempt {att.attempt} of {len(st.attempts)}, no retries left)"
    _advance(run, Phase.FAILED, reason, msg, att.finishedAt)
    return RunStep(status=st, events=[(reason, msg)])


def _advance(run: Run, phase: Phase, reason: str, msg: str, at: datetime | None = None) -> None:
    """transition(), through the steps a pod skips (Pending -> Queued -> Starting) where the table asks."""
    st = run.status
    while st.phase != phase and not st.phase.can_become(phase) and st.phase in _WALK[:-1]:
        step = _WALK[_WALK.index(st.phase) + 1]
        transition(run, step, *_STEP[step])
    transition(run, phase, reason, msg, at)


def launch_spec(run: Run, attempt: int, server_url: str, token: str | None = None) -> LaunchSpec:
    """One attempt as the runtime starts it: what the local controller gives a run (its token when the
    operator can issue one), less a built environment's directory."""
    # MLflow's client logs to runyard unless the spec names its own server. Its token is not set here: the
    # runtime moves RUNYARD_TOKEN into a Secret and gives MLflow's client the same one from it.
    mlflow = {} if "MLFLOW_TRACKING_URI" in run.spec.env else {"MLFLOW_TRACKING_URI": server_url}
    return attempt_spec(run, attempt, attempt_env(run, attempt, server_url, token, mlflow))
