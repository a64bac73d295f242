"""The Session reconciler: one Run per start, JupyterLab in it, idle and lifetime reclamation.

A Session that is not `stopped` has one live Run it owns, which runs `python -m runyard.sessions.jupyter`
(the server's Python, where JupyterLab is installed; the kernel runs the project environment's Python) in
the session's kept directory, sandboxed like any run, accepting on a loopback socket the server made (the
port is `status.port`; only the server's proxy knows the token). Phase Pending until the run's process is up,
Starting until Jupyter answers `/api/status`, then Running. Activity is the later of what Jupyter reports
(kernels, terminals, its API) and what the proxy forwarded; past `idleTimeoutSeconds` of none, or
`maxLifetimeSeconds` after the start, the controller marks the session stopped itself (as Kubeflow's
culler does), after a Warning event. A start is a Session not stopped whose spec changed since the last run
ended (`runyard session start` sets stopped false, or RESTART_ANNOTATION when it already was), so a run that
ended unasked leaves the session Failed rather than restarting it in a loop."""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import httpx

from runyard.controller.context import Context
from runyard.controller.owned_runs import delete_all, prune_ended, request_stop
from runyard.controller.session_support import LOOPBACK, SessionSupport
from runyard.core.clock import aware, now
from runyard.core.phases import Phase, Reason
from runyard.core.resources import (
    ObjectMeta,
    OwnerReference,
    Run,
    RunSpec,
    Session,
    SessionSpec,
    SessionStatus,
)
from runyard.runtime.base import LaunchSpec
from runyard.store import EventSpec

CLOCK: Callable[[], datetime] = now  # what idleness and lifetime are measured with; tests replace it
COMMAND = [sys.executable, "-m", "runyard.sessions.jupyter"]
SESSION_LABEL = "runyard.dev/session"
PORT_ANNOTATION = "runyard.dev/session-port"
RESTART_ANNOTATION = "runyard.dev/start-requested"  # an ISO time: start again, the spec unchanged
LISTEN_FD = 5
STARTING_POLL = 0.1  # seconds between two looks at a session whose Jupyter is not answering yet
RUNNING_POLL = 15.0  # at most this long between two reads of a running session's activity
PROBE_TIMEOUT = 1.0
KEEP_ENDED = 5  # ended runs kept per session (their logs)
STOP_GRACE = 10.0  # Jupyter shuts its kernels down on SIGTERM


def base_url(project: str, name: str) -> str:
    """The path a session is reached at through the server: Jupyter's base_url, ending with /."""
    return f"/sessions/{project}/{name}/"


def warn_lead(timeout: float) -> float:
    """How long before reclaiming an idle session its Warning event comes."""
    return min(300.0, timeout / 10)


def reclaim(now_: datetime, spec: SessionSpec, st: SessionStatus) -> tuple[str, str] | None:
    """Whether a Running session is reclaimed now: (reason, message), or a warning that it soon will be:
    ("IdleSoon", message) once, or None. Pure, so the rules are tested with any clock."""
    if st.startedAt is not None:
        lived = (now_ - st.startedAt).total_seconds()
        if lived >= spec.maxLifetimeSeconds:
            return "MaxLifetime", f"stopped after its maximum lifetime of {spec.maxLifetimeSeconds} s"
    last = st.lastActivity or st.readyAt
    if last is None:
        return None
    idle = (now_ - last).total_seconds()
    timeout = spec.idleTimeoutSeconds
    if idle >= timeout:
        return "Idle", f"stopped after {idle:.0f} s without kernel, terminal or HTTP activity"
    if idle >= timeout - warn_lead(timeout) and (st.idleWarnedAt is None or st.idleWarnedAt < last):
        at = last + timedelta(seconds=timeout)
        return "IdleSoon", f"unused for {idle:.0f} s: it is stopped at {at.isoformat()} unless used"
    return None


def next_look(now_: datetime, spec: SessionSpec, st: SessionStatus) -> float:
    """Seconds until the rules above could say something new (at most RUNNING_POLL)."""
    due = [RUNNING_POLL]
    last = st.lastActivity or st.readyAt
    if last is not None:
        timeout = spec.idleTimeoutSeconds
        for at in (timeout - warn_lead(timeout), timeout):
            due.append((last + timedelta(seconds=at) - now_).total_seconds())
    if st.startedAt is not None:
        due.append((st.startedAt + timedelta(seconds=spec.maxLifetimeSeconds) - now_).total_seconds())
    return max(0.05, min(d for d in due if d > 0) if any(d > 0 for d in due) else 0.05)


def reconcile_session(ctx: Context, session: Session) -> float | None:
    """Bring the session's run to what its spec asks. Returns seconds until it wants another look."""
    sup = ctx.sessions
    assert sup is not None
    m = session.metadata
    runs = ctx.store.list(Run, m.project, owner_uid=session.uid)
    if m.deletionTimestamp is not None:
        return _delete(ctx, sup, session, runs)
    st = session.status.model_copy(deep=True)
    events: list[EventSpec] = []
    current = next((r for r in runs if r.uid == st.runUid), None)
    live = [r for r in runs if not r.status.phase.is_terminal() and r.metadata.deletionTimestamp is None]
    for run in runs:  # a socket bound for a run that ended (or was deleted) before its launch
        if run.status.phase.is_terminal() or run.metadata.deletionTimestamp is not None:
            sup.release(run.uid)
    if current is None and st.runUid is None:  # killed between making its run and saying so: adopt it
        current = next((r for r in live if not r.spec.stopRequested), None)
        if current is not None:
            st.run, st.runUid = current.metadata.name, current.uid
            st.port = int(current.metadata.annotations.get(PORT_ANNOTATION) or 0) or None
            st.url = sup.public_url + base_url(m.project, m.name)
            st.startedAt = st.startedAt or CLOCK()
    others = [r for r in live if r.uid != st.runUid]
    delay: float | None = None
    for run in others:  # from an earlier start: never two Jupyter servers on one directory
        request_stop(ctx, run, "replaced by a new start of its session")
    if session.spec.stopped:
        delay = _stopped(ctx, st, live)
    elif current is None or (current.status.phase.is_terminal() and _start_wanted(session, current)):
        if others:
            st.phase, st.reason, st.message = "Pending", "Starting", "waiting for the previous run to stop"
            delay = 0.5
        else:
            run = _create_run(ctx, sup, session)
            st = SessionStatus(
                phase="Pending",
                reason="Starting",
                message=f"starting run {run.metadata.name}",
                url=sup.public_url + base_url(m.project, m.name),
                run=run.metadata.name,
                runUid=run.uid,
                port=int(run.metadata.annotations[PORT_ANNOTATION]),
                startedAt=CLOCK(),
                runs=st.runs,
                conditions=st.conditions,
            )
            events.append((Reason.RUN_CREATED, f"run {run.metadata.name} started for this session"))
            delay = STARTING_POLL
    elif current.status.phase.is_terminal():
        if st.phase != "Failed":
            st.phase, st.reason = "Failed", current.status.reason or "Error"
            st.message = (
                f"its run {current.metadata.name} ended unasked ({current.status.message or st.reason}): "
                f"see `runyard logs {current.metadata.name}`; `runyard session start {m.name}` starts it "
                "again"
            )
            events.append((st.reason, st.message, "Warning"))
    else:
        delay = _running(ctx, sup, session, current, st, events)
    st.observedGeneration = m.generation
    st.runs = [r.metadata.name for r in runs if r.metadata.deletionTimestamp is None]
    prune_ended(ctx, runs, KEEP_ENDED)
    if events or st.model_dump(mode="json") != session.status.model_dump(mode="json"):
        session.status = st
        session = ctx.save(session, *events)
    if st.reason in ("Idle", "MaxLifetime") and not session.spec.stopped and st.phase == "Stopping":
        _mark_stopped(ctx, session)
        return 0.05
    return delay


def _start_wanted(session: Session, ended: Run) -> bool:
    """A new start after `ended`: the spec changed since (it was stopped and started again, or edited), or
    `runyard session start` asked again after it ended."""
    if session.status.observedGeneration != session.metadata.generation:
        return True
    asked = session.metadata.annotations.get(RESTART_ANNOTATION)
    created = ended.metadata.creationTimestamp
    try:
        return bool(asked and created and datetime.fromisoformat(asked) > created)
    except ValueError:
        return False


def _stopped(ctx: Context, st: SessionStatus, live: list[Run]) -> float | None:
    for run in live:
        request_stop(ctx, run, "its session was stopped")
    reclaimed = st.reason in ("Idle", "MaxLifetime")  # its message says why; else the user stopped it
    why = (st.reason or "") if reclaimed else Reason.STOPPED
    said = (st.message or "") if reclaimed else "stopped"
    if live:
        st.phase, st.reason, st.message = "Stopping", why, said if reclaimed else "stopping"
        return 0.5
    if st.phase != "Stopped":
        st.phase, st.reason, st.message = "Stopped", why, f"{said}; its files are kept"
    return None


def _running(
    ctx: Context, sup: SessionSupport, session: Session, run: Run, st: SessionStatus, events: list
) -> float:
    """The current run is live: wait for Jupyter, then watch activity and lifetime."""
    if run.status.phase != Phase.RUNNING:
        st.phase, st.reason = "Pending", run.status.reason or "Starting"
        st.message = run.status.message or f"run {run.metadata.name} is {run.status.phase}"
        return STARTING_POLL if run.status.phase == Phase.STARTING else 0.5
    status = _probe(sup, session, run)
    now_ = CLOCK()
    if status is None:
        if st.readyAt is None:
            st.phase, st.reason, st.message = "Starting", "Starting", "waiting for Jupyter to answer"
        else:
            st.message = f"Jupyter does not answer (busy?): see `runyard logs {run.metadata.name}`"
        return STARTING_POLL if st.readyAt is None else 1.0
    if st.readyAt is None:
        st.readyAt = now_
        events.append(("Ready", f"ready at {st.url}"))
    seen = [t for t in (_parse(status.get("last_activity")), sup.activity(session.uid), st.lastActivity) if t]
    st.lastActivity = max(seen) if seen else st.readyAt
    if st.idleWarnedAt is not None and st.lastActivity > st.idleWarnedAt:
        st.idleWarnedAt = None  # used again: a later idle period warns again
    st.phase, st.reason = "Running", "Ready"
    st.message = f"open {st.url}"
    verdict = reclaim(now_, session.spec, st)
    if verdict is not None:
        reason, text = verdict
        if reason == "IdleSoon":
            st.idleWarnedAt = now_
            events.append((reason, text, "Warning"))
        else:
            st.phase, st.reason, st.message = "Stopping", reason, text
            events.append((reason, text, "Warning"))
            return 0.05
    return next_look(now_, session.spec, st)


def _probe(sup: SessionSupport, session: Session, run: Run) -> dict | None:
    """Jupyter's /api/status (which does not count as activity), or None while it does not answer."""
    st, m = session.status, session.metadata
    url = f"http://{LOOPBACK}:{st.port}{base_url(m.project, m.name)}api/status"
    try:
        headers = {"Authorization": f"token {sup.token(run.uid)}"}
        reply = httpx.get(url, headers=headers, timeout=PROBE_TIMEOUT)
        return reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def _create_run(ctx: Context, sup: SessionSupport, session: Session) -> Run:
    m, spec = session.metadata, session.spec
    directory = sup.directory(session.uid)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{m.name[:52].rstrip('-')}-{secrets.token_hex(3)}"
    env = {
        "RUNYARD_SESSION_BASE_URL": base_url(m.project, m.name),
        "RUNYARD_SESSION_EDITOR": spec.editor,
        "RUNYARD_SESSION_LISTEN_FD": str(LISTEN_FD),
        "RUNYARD_SESSION": m.name,
    }
    run = Run(
        metadata=ObjectMeta(
            name=name,
            project=m.project,
            labels={SESSION_LABEL: m.name},
            annotations={PORT_ANNOTATION: "0"},
            ownerReferences=[OwnerReference(kind="Session", name=m.name, uid=session.uid)],
        ),
        spec=RunSpec(
            command=COMMAND,
            env=env,
            environment=spec.environment,
            resources=spec.resources,
            snapshot=spec.snapshot,
            stopGracePeriodSeconds=STOP_GRACE,
        ),
    )
    # The port is known before the run exists: bound under a provisional key, then filed under the run's uid.
    provisional = f"new:{session.uid}"
    port = sup.listener(provisional, None).getsockname()[1]
    run.metadata.annotations[PORT_ANNOTATION] = str(port)
    try:
        created = ctx.store.create(run, events=[(Reason.CREATED, f"the run of Session {m.name}")])
    except BaseException:
        sup.refile(provisional, None)
        raise
    sup.refile(provisional, created.uid)
    ctx.notifier.touch(created.uid)  # the run controller launches it
    return created


def _mark_stopped(ctx: Context, session: Session) -> None:
    """Reclaimed: the session's desired state becomes stopped (a Conflict makes the loop look again)."""
    session.spec.stopped = True
    ctx.store.replace(session, session.metadata.resourceVersion)
    ctx.notifier.touch(session.uid)


def _delete(ctx: Context, sup: SessionSupport, session: Session, runs: list[Run]) -> float | None:
    """Delete its runs (stopped first by the run controller), then its directory, then the session."""
    if delete_all(ctx, runs):
        return 0.5
    shutil.rmtree(sup.directory(session.uid), ignore_errors=True)
    ctx.store.delete(session.uid)
    ctx.notifier.touch(session.uid)
    return None


def _session_uid(run: Run) -> str | None:
    return next((o.uid for o in run.metadata.ownerReferences if o.kind == "Session"), None)


def session_launch(ctx: Context, run: Run, spec: LaunchSpec) -> LaunchSpec:
    """A session run's launch (any other run's unchanged): its listening socket (bound again on its recorded
    port after a restart) as fd 5, the session's kept directory as its work dir, and what it gets at launch
    and nowhere else: its Jupyter token and the kernel's Python (the environment's)."""
    owner = _session_uid(run)
    if ctx.sessions is None or owner is None:
        return spec
    port = int(run.metadata.annotations.get(PORT_ANNOTATION) or 0) or None
    python = f"{spec.environment}/bin/python" if spec.environment else sys.executable
    env = {**spec.env, "JUPYTER_TOKEN": ctx.sessions.token(run.uid), "RUNYARD_SESSION_KERNEL_PYTHON": python}
    return replace(
        spec,
        env=env,
        listen_fd=ctx.sessions.listener(run.uid, port).fileno(),
        workdir=str(ctx.sessions.directory(owner)),
    )


def session_launched(ctx: Context, run: Run) -> None:
    """The launch returned: the run's process holds its socket (or never will); the server's copy goes."""
    if ctx.sessions is not None:
        ctx.sessions.release(run.uid)
