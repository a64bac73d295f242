"""The Run reconciler: admit, launch on the runtime, watch, stop, time out, retry, finish.

Each step reads the run, acts (no transaction open while the runtime works), then writes status with the
resourceVersion it read. Restart it at any moment and it converges: launches are idempotent per attempt.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import replace
from datetime import timedelta

from runyard.controller import capacity
from runyard.controller.attempts import attempt_env, attempt_spec
from runyard.controller.context import Context
from runyard.controller.environments import environment_directory, prepare_environment
from runyard.controller.models.replicas import listen_fd
from runyard.controller.sessions import session_launch, session_launched
from runyard.controller.status import set_condition, transition
from runyard.core.clock import now
from runyard.core.errors import Conflict, NotFound
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Attempt, Run
from runyard.runtime.base import AttemptState, Handle, LaunchError, LaunchSpec, Observed
from runyard.services.auth import issue_token
from runyard.services.node import demand_of
from runyard.store import EventSpec
from runyard.store.tracking import run_hex


def reconcile_run(ctx: Context, run: Run) -> float | None:
    """Drive one run a step (or several) forward; returns seconds until it wants another look, if soon."""
    if run.metadata.deletionTimestamp is not None:
        return _finalize_deleted(ctx, run)
    if run.spec.trackingOnly:
        return _tracking_only(ctx, run)
    step = {
        Phase.PENDING: _admit,
        Phase.QUEUED: _start,
        Phase.STARTING: _launch,
        Phase.RUNNING: _watch,
    }.get(run.status.phase)
    return step(ctx, run) if step else None


def _tracking_only(ctx: Context, run: Run) -> float | None:
    """A tracking-only run has no process: it is never admitted nor launched and holds no capacity. Its
    client ends it; a stop cancels it. It is created Running (by start_run or MLflow's create-run): Runs
    are never created through the API."""
    if run.status.phase.is_terminal():
        return None
    if run.spec.stopRequested:
        transition(run, Phase.CANCELLED, Reason.STOPPED, "stopped on request (a tracking-only run)")
        return _finish(ctx, run, (Reason.STOPPED, "stopped on request"))
    return None


def _admit(ctx: Context, run: Run) -> float | None:
    if run.spec.stopRequested:
        return _cancel_unstarted(ctx, run)
    unschedulable = _unschedulable(ctx, run)
    if unschedulable:
        transition(run, Phase.FAILED, Reason.UNSCHEDULABLE, unschedulable)
        return _finish(ctx, run, (Reason.UNSCHEDULABLE, unschedulable, "Warning"))
    env = prepare_environment(ctx, run)
    if env.failure:
        reason, msg = env.failure
        transition(run, Phase.FAILED, reason, msg)
        return _finish(ctx, run, (reason, msg, "Warning"))
    if env.wait_seconds is not None:
        if run.status.reason != Reason.ENVIRONMENT_BUILDING:
            run.status.reason, run.status.message = Reason.ENVIRONMENT_BUILDING, env.message
            set_condition(
                run.status.conditions, "EnvironmentReady", "False", Reason.ENVIRONMENT_BUILDING, env.message
            )
            ctx.save(run, (Reason.ENVIRONMENT_BUILDING, env.message))
        return env.wait_seconds
    events: list[EventSpec] = []
    if env.status is not None:
        run.status.environment = env.status
        set_condition(
            run.status.conditions, "EnvironmentReady", "True", Reason.ENVIRONMENT_READY, env.message
        )
        events.append((Reason.ENVIRONMENT_READY, env.message))
    transition(run, Phase.QUEUED, Reason.ADMITTED, "admitted: no quota applies on this server")
    return _start(ctx, run, [*events, (Reason.ADMITTED, "admitted to the queue")])


def _unschedulable(ctx: Context, run: Run) -> str | None:
    """Why the node could never run it, even empty (cpu, memory or GPUs beyond what it offers), if so:
    better a clear failure than a silent wait or a run without the GPU it asked for."""
    return capacity.unschedulable(ctx, run)


def _cancel_unstarted(ctx: Context, run: Run) -> float | None:
    transition(run, Phase.CANCELLED, Reason.STOPPED, "stopped before it started")
    return _finish(ctx, run, (Reason.STOPPED, "stopped before it started"))


def _start(ctx: Context, run: Run, events: list | None = None) -> float | None:
    """Queued: launch the next attempt when its backoff is over and there is capacity.

    Record first, side effect second: the attempt and the Starting phase are stored before anything is
    launched, so a stop or a delete that lands meanwhile always finds the attempt it has to stop.
    """
    events = events or []
    if run.spec.stopRequested:
        return _cancel_unstarted(ctx, run)
    st = run.status
    if st.nextAttemptAt and st.nextAttemptAt > now():
        if events:
            ctx.save(run, *events)
        return (st.nextAttemptAt - now()).total_seconds()
    unschedulable = _unschedulable(ctx, run)  # the node offers less since it was admitted (a restart)
    if unschedulable:
        transition(run, Phase.FAILED, Reason.UNSCHEDULABLE, unschedulable)
        return _finish(ctx, run, *events, (Reason.UNSCHEDULABLE, unschedulable, "Warning"))
    active = ctx.store.count(Run, phases=[Phase.STARTING, Phase.RUNNING], executed_only=True)
    if active >= ctx.settings.max_running_runs:
        msg = f"{active} runs are active, the limit is {ctx.settings.max_running_runs}"
        if st.reason != Reason.WAITING_FOR_CAPACITY:
            st.reason, st.message = Reason.WAITING_FOR_CAPACITY, msg
            events.append((Reason.WAITING_FOR_CAPACITY, msg))
        return _wait(ctx, run, events)
    # Record first: the reservation is stored before the Starting phase that launches on it.
    held = capacity.reserve(ctx, run)
    if isinstance(held, str):
        changed = (st.reason, st.message) != (Reason.WAITING_FOR_RESOURCES, held)  # e.g. another holder
        if st.reason != Reason.WAITING_FOR_RESOURCES:
            events.append((Reason.WAITING_FOR_RESOURCES, held))
        if changed:
            st.reason, st.message = Reason.WAITING_FOR_RESOURCES, held
            set_condition(st.conditions, "ResourcesAvailable", "False", Reason.WAITING_FOR_RESOURCES, held)
        return _wait(ctx, run, events, changed)
    ctx.waiting_for_capacity.pop(run.uid, None)
    held_text = capacity.describe(held) if held else ""
    st.allocation = held.as_status() if held else None
    if any(c.type == "ResourcesAvailable" for c in st.conditions):
        set_condition(st.conditions, "ResourcesAvailable", "True", "ResourcesAllocated", f"holds {held_text}")
    n = len(st.attempts) + 1
    st.attempts.append(Attempt(attempt=n))
    msg = f"launching attempt {n} on the {ctx.runtime.kind} runtime" + (
        f" with {held_text}" if held_text else ""
    )
    if any(c.type == "Stopping" for c in st.conditions):  # an earlier attempt's timeout
        set_condition(st.conditions, "Stopping", "False", Reason.LAUNCHING, msg)
    transition(run, Phase.STARTING, Reason.LAUNCHING, msg)
    return _launch(ctx, ctx.save(run, *events))


def _wait(ctx: Context, run: Run, events: list[EventSpec], changed: bool = False) -> float | None:
    """Stay Queued until a slot or capacity frees (wake_waiting queues it then; the resync looks too)."""
    if events or changed:
        ctx.save(run, *events)
    ctx.waiting_for_capacity[run.uid] = demand_of(run.spec.resources)
    return None


def _launch_spec(ctx: Context, run: Run, attempt: int) -> LaunchSpec:
    spec, m = run.spec, run.metadata
    gpus = list((run.status.allocation or {}).get("gpus", []))
    token = issue_token(ctx.store, f"run {m.name} attempt {attempt}", "run", m.project, run.uid)
    env = {
        **attempt_env(run, attempt, ctx.api_url, token, _mlflow_env(ctx, run, token)),
        **capacity.gpu_env(ctx.node, gpus),  # after the spec's: a run sees the GPUs it holds, and only those
    }
    launch = replace(
        attempt_spec(run, attempt, env),
        gpus=gpus,
        pids=spec.resources.pids or ctx.runtime_settings.default_pids,
        environment=environment_directory(ctx, run),
        listen_fd=listen_fd(ctx, run),  # a model's replica accepts on the model's listener
    )
    return session_launch(ctx, run, launch)


def _mlflow_env(ctx: Context, run: Run, token: str) -> dict[str, str]:
    """What MLflow's client reads, so that `mlflow.start_run()` in the run's code logs into this very run,
    as under MLflow's own projects. A spec that names its own tracking server keeps it."""
    if "MLFLOW_TRACKING_URI" in run.spec.env:
        return {}
    ref = ctx.store.tracked_run(run.uid)
    env = {"MLFLOW_TRACKING_URI": ctx.api_url, "MLFLOW_TRACKING_TOKEN": token}
    env["MLFLOW_RUN_ID"] = run_hex(run.uid)
    return {**env, "MLFLOW_EXPERIMENT_ID": ref.experiment_id} if ref else env


def _launch(ctx: Context, run: Run) -> float | None:
    """Starting: launch the stored attempt (idempotent, so a restart mid-launch adopts, never doubles),
    then record its handle."""
    att = run.status.attempts[-1]
    if run.spec.stopRequested:  # stopped while Starting: stop what an earlier launch may have started
        handle = ctx.runtime.find_launched(run.uid, att.attempt)
        if handle is None:
            return _attempt_ended(ctx, run, None, Reason.STOPPED, "stopped before its process started")
        return _record_launch(ctx, run, handle)
    try:
        handle = ctx.runtime.launch(_launch_spec(ctx, run, att.attempt))
    except LaunchError as exc:
        return _attempt_ended(ctx, run, None, Reason.LAUNCH_FAILED, f"could not launch: {exc}")
    finally:
        session_launched(ctx, run)
    return _record_launch(ctx, run, handle)


def _record_launch(ctx: Context, run: Run, handle: Handle) -> float | None:
    """Store the handle of what was launched. A user's stop or delete may have been written since the run
    was read: then read it again and store the handle onto that, so the next step stops the process."""
    n = run.status.attempts[-1].attempt
    while True:
        att = run.status.attempts[-1]
        att.handle, att.startedAt = handle, now()
        run.status.startedAt = run.status.startedAt or att.startedAt
        msg = f"attempt {n} started"
        transition(run, Phase.RUNNING, Reason.STARTED, msg)
        try:
            run = ctx.save(run, (Reason.STARTED, msg))
            break
        except (Conflict, NotFound):
            fresh = ctx.store.get_uid(run.uid)
        if not (
            isinstance(fresh, Run)
            and fresh.status.phase == Phase.STARTING
            and fresh.status.attempts[-1].attempt == n
        ):  # only this controller moves a run out of Starting; should that change, stop what nobody tracks
            ctx.runtime.stop(handle, 0)
            return None
        run = fresh
    if run.spec.stopRequested or run.metadata.deletionTimestamp is not None:
        return reconcile_run(ctx, run)  # act on it now rather than at the next notice
    return _next_look(run)  # whether a process started in time, the resync looks at each tick


def _watch(ctx: Context, run: Run) -> float | None:
    att = run.status.attempts[-1]
    handle = att.handle or {}
    obs = ctx.runtime.observe(handle)
    if obs.state == AttemptState.EXITED:
        return _exited(ctx, run, obs)
    if obs.state == AttemptState.LOST:
        return _attempt_ended(ctx, run, None, Reason.PROCESS_LOST, obs.message or "the process is gone")
    launch_left = _launch_time_left(ctx, run, obs) if obs.state == AttemptState.STARTING else None
    if launch_left is not None and launch_left <= 0:
        ctx.runtime.stop(handle, 0)
        limit = ctx.settings.launch_timeout_seconds
        msg = (
            f"no process started within launch_timeout_seconds={limit:g} (without progress copying its files)"
        )
        return _attempt_ended(ctx, run, None, Reason.LAUNCH_FAILED, msg)
    events: list[EventSpec] = []
    if run.status.limits is None and obs.limits:
        run.status.limits = obs.limits
        if obs.limits.get("enforced"):
            events.append((Reason.LIMITS_APPLIED, _describe_limits(obs.limits)))
    if run.status.sandbox is None and obs.sandbox:
        events.extend(_record_sandbox(run, obs.sandbox))
    stop = _stop_reason(run)
    if stop and run.status.reason not in (Reason.STOPPING, Reason.DEADLINE_EXCEEDED):
        reason, msg = stop
        ctx.runtime.stop(handle, run.spec.stopGracePeriodSeconds)
        run.status.reason, run.status.message = reason, msg
        set_condition(run.status.conditions, "Stopping", "True", reason, msg)
        events.append((reason, msg, "Warning" if reason == Reason.DEADLINE_EXCEEDED else "Normal"))
    if events:
        ctx.save(run, *events)
    return _soonest(_next_look(run), launch_left)


def _launch_time_left(ctx: Context, run: Run, obs: Observed) -> float:
    """Seconds left before a launch that has started no process (nor made progress) is given up."""
    marks = [t for t in (run.status.attempts[-1].startedAt, obs.progress_at) if t is not None]
    since = max(marks) if marks else now()
    return ctx.settings.launch_timeout_seconds - (now() - since).total_seconds() + 0.01


def _soonest(*delays: float | None) -> float | None:
    known = [d for d in delays if d is not None]
    return max(0.0, min(known)) if known else None


def _stop_reason(run: Run) -> tuple[str, str] | None:
    if run.spec.stopRequested:
        return Reason.STOPPING, f"stopping: SIGTERM, then SIGKILL after {run.spec.stopGracePeriodSeconds:g}s"
    limit = run.spec.timeoutSeconds
    started = run.status.attempts[-1].startedAt
    if limit and started and now() - started > timedelta(seconds=limit):
        return Reason.DEADLINE_EXCEEDED, f"ran longer than timeoutSeconds={limit:g}; stopping it"
    return None


def _next_look(run: Run) -> float | None:
    limit, started = run.spec.timeoutSeconds, run.status.attempts[-1].startedAt
    if limit and started and run.status.reason != Reason.DEADLINE_EXCEEDED:
        return max(0.0, limit - (now() - started).total_seconds()) + 0.01
    return None


def _exited(ctx: Context, run: Run, obs: Observed) -> float | None:
    code = obs.exit_code
    if run.spec.stopRequested:
        return _attempt_ended(ctx, run, code, Reason.STOPPED, f"stopped on request ({_exit_text(code)})", obs)
    if run.status.reason == Reason.DEADLINE_EXCEEDED:
        return _attempt_ended(
            ctx, run, code, Reason.DEADLINE_EXCEEDED, f"timed out ({_exit_text(code)})", obs
        )
    if code == 0:
        return _attempt_ended(ctx, run, code, Reason.COMPLETED, "exited with code 0", obs)
    text = f"{_exit_text(code)}: {obs.message}" if obs.message else _exit_text(code)
    if obs.oom_killed:
        return _attempt_ended(ctx, run, code, Reason.OUT_OF_MEMORY, text, obs)
    return _attempt_ended(
        ctx, run, code, Reason.ERROR if code is not None else Reason.LAUNCH_FAILED, text, obs
    )


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _attempt_ended(
    ctx: Context,
    run: Run,
    code: int | None,
    reason: str,
    msg: str,
    obs: Observed | None = None,
) -> float | None:
    """Record how the attempt ended; then succeed, fail, or queue a retry per the retry policy."""
    st = run.status
    att = st.attempts[-1]
    att.exitCode, att.reason = code, reason
    att.finishedAt = (obs.finished_at if obs else None) or now()
    st.exitCode = code
    if obs and obs.limits and st.limits is None:
        st.limits = obs.limits
    if obs and obs.sandbox and st.sandbox is None:
        _record_sandbox(run, obs.sandbox)  # it ended before a look saw it running: no event then
    if obs and obs.peak_memory is not None:
        st.peakMemoryBytes = max(obs.peak_memory, st.peakMemoryBytes or 0)
    if reason == Reason.COMPLETED:
        transition(run, Phase.SUCCEEDED, reason, msg, att.finishedAt)
        return _finish(ctx, run, (reason, msg))
    if reason == Reason.STOPPED:
        transition(run, Phase.CANCELLED, reason, msg, att.finishedAt)
        return _finish(ctx, run, (reason, msg))
    retries = run.spec.retryPolicy
    if len(st.attempts) <= retries.maxRetries:  # timeouts too: timeoutSeconds is per attempt
        backoff = retries.delay(len(st.attempts))  # exponential: 1, 2, 4… seconds by default
        next_try = f"{len(st.attempts) + 1}/{retries.maxRetries + 1}"
        note = f"attempt {att.attempt} {msg}; retrying in {backoff:g}s ({next_try})"
        transition(run, Phase.QUEUED, Reason.RETRYING, note)
        st.nextAttemptAt = now() + timedelta(seconds=backoff)
        capacity.release(ctx, run)  # free during the backoff; its next start reserves anew
        ctx.save(run, (Reason.RETRYING, note, "Warning"))
        capacity.wake_waiting(ctx)
        return backoff
    if len(st.attempts) > 1:
        msg = f"{msg} (attempt {att.attempt} of {len(st.attempts)}, no retries left)"
    transition(run, Phase.FAILED, reason, msg, att.finishedAt)
    return _finish(ctx, run, (reason, msg, "Warning"))


def _finish(ctx: Context, run: Run, *events: EventSpec) -> float | None:
    """The run has ended: nothing more to look at, and its slot and allocation (freed with its final
    status, in one transaction) go to the runs that wait for them."""
    ctx.save(run, *events, final=True)
    ctx.waiting_for_capacity.pop(run.uid, None)
    capacity.wake_waiting(ctx)
    return None


def _finalize_deleted(ctx: Context, run: Run) -> float | None:
    """Stop what still runs, then remove the run's files, artifacts, tokens and record (its tracking data
    goes with the record)."""
    if run.status.attempts and run.status.phase in (Phase.STARTING, Phase.RUNNING):
        att = run.status.attempts[-1]
        handle = att.handle or ctx.runtime.find_launched(run.uid, att.attempt)
        if handle and ctx.runtime.observe(handle).state in (AttemptState.RUNNING, AttemptState.STARTING):
            ctx.runtime.stop(handle, run.spec.stopGracePeriodSeconds)
            return 0.2
    for att in run.status.attempts:  # a launch whose handle was never stored leaves files too
        handle = att.handle or ctx.runtime.find_launched(run.uid, att.attempt)
        if handle:
            ctx.runtime.cleanup(handle)
    ref = ctx.store.tracked_run(run.uid)
    if ref is not None:
        ctx.artifacts.remove_uri(ref.artifact_uri.removesuffix("/artifacts"), run.metadata.project)
    ctx.store.revoke_run_tokens(run.uid)
    ctx.store.delete(run.uid)
    ctx.notifier.touch(run.uid)
    return None


def fail_unreconcilable(ctx: Context, run: Run, msg: str) -> None:
    """The controller cannot act on this run (see retry.py): stop what it runs, and fail it, saying why."""
    att = run.status.attempts[-1] if run.status.attempts else None
    if att and att.handle:
        with contextlib.suppress(Exception):
            ctx.runtime.stop(att.handle, run.spec.stopGracePeriodSeconds)
    if not run.status.phase.is_terminal():
        transition(run, Phase.FAILED, Reason.RECONCILE_ERROR, msg)
    _finish(ctx, run, (Reason.RECONCILE_ERROR, msg, "Warning"))


def _record_sandbox(run: Run, sandbox: dict) -> list[EventSpec]:
    """Keep how the run is isolated; an unsandboxed run says so, as a condition and a warning event."""
    run.status.sandbox = sandbox
    if sandbox.get("mechanism") not in (None, "none"):
        set_condition(
            run.status.conditions, "Sandboxed", "True", "Sandboxed", f"in a {sandbox['mechanism']} sandbox"
        )
        return []
    msg = f"running unsandboxed: {sandbox.get('reason') or 'the host cannot sandbox runs'}"
    set_condition(run.status.conditions, "Sandboxed", "False", Reason.UNSANDBOXED, msg)
    return [(Reason.UNSANDBOXED, msg, "Warning")]


def _describe_limits(limits: dict) -> str:
    parts = [f"{k}={v}" for k, v in limits.items() if k != "mechanism" and v not in (None, [], "")]
    return f"limits applied with {limits.get('mechanism', 'none')}: " + ", ".join(parts)
