"""The Model reconciler: versions, replicas (Runs), rolling updates, autoscaling, scale to zero.

Traffic needs no switch: every replica accepts on the model's one listening socket. A version "serves"
(currentVersion) once as many of its replicas are ready as are desired; only then are the others stopped
(drained), so a rolling update refuses no request. A replica that ends unasked is replaced after an
exponential backoff. Replicas launched on another listener (the one a server held before it was killed and
restarted) are replaced the same way as an older version's."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from runyard.controller.context import Context
from runyard.controller.models.replicas import (
    LISTENER_ANNOTATION,
    create_replica,
    stop_replica,
    version_of,
)
from runyard.controller.models.versions import resolve_source, version_for
from runyard.controller.owned_runs import delete_all, prune_ended
from runyard.core.errors import Invalid, NotFound
from runyard.core.phases import Phase
from runyard.core.resources import Model, ModelStatus, Run
from runyard.serving.autoscale import ScaleMemory, desired_replicas
from runyard.serving.state import LIVENESS_FAILURES, Replica, ReplicaHealth, Serving
from runyard.store import EventSpec

BACKOFF_FIRST, BACKOFF_CAP, HEALTHY_RESET = 0.5, 60.0, 60.0  # seconds
KEEP_ENDED = 10  # ended replica runs kept per model (their logs hold the sampled requests)
STALLED_AFTER_FAILURES = 3


@dataclass
class _Memory:
    """What the controller keeps of a model between passes (in memory: a restart starts it over)."""

    counted: set[str] = field(default_factory=set)  # ended replicas already counted as failures (or not)
    failures: int = 0
    last_failure: float = 0.0  # monotonic
    next_start: float = 0.0  # monotonic: no replica starts before (backoff)
    last_error: str = ""
    scale: ScaleMemory = field(default_factory=ScaleMemory)
    rollout_since: dict[int, float] = field(default_factory=dict)
    target_failures: dict[int, int] = field(default_factory=dict)
    stalled: set[int] = field(default_factory=set)

    def failed(self, version: int, why: str, mono: float) -> float:
        self.failures += 1
        self.last_failure, self.last_error = mono, why
        self.target_failures[version] = self.target_failures.get(version, 0) + 1
        delay = min(BACKOFF_FIRST * 2 ** (self.failures - 1), BACKOFF_CAP)
        self.next_start = max(self.next_start, mono + delay)
        return delay


_memory: dict[str, _Memory] = {}


def reconcile_model(ctx: Context, model: Model) -> float | None:
    """Bring the model's replicas to what its spec and load ask for. Returns seconds until it wants to be
    looked at again (probes, autoscaling), or None."""
    serving = ctx.serving
    assert serving is not None
    m = model.metadata
    runs = ctx.store.list(Run, m.project, owner_uid=model.uid)
    mem = _memory.get(model.uid)
    if mem is None:  # first look since this server started: what ended before is history
        mem = _memory[model.uid] = _Memory(counted={r.uid for r in runs if r.status.phase.is_terminal()})
    if m.deletionTimestamp is not None:
        return _delete(ctx, model, runs)
    st = model.status.model_copy(deep=True)
    events: list[EventSpec] = []
    unresolved, new = None, False
    try:
        source = resolve_source(ctx.store, m.project, model.spec.modelUri)
    except (Invalid, NotFound) as exc:  # the version serving (if any) goes on serving
        unresolved = str(exc)
        serving_now = next((v for v in st.versions if v.version == st.currentVersion), None)
        if serving_now is None:
            return _unresolvable(ctx, model, st, unresolved)
        version = serving_now
    st.port = serving.listener(model.uid, st.port).getsockname()[1]
    st.url = serving.url(st.port)
    if unresolved is None:
        version, new = version_for(st, model.spec, source)
    if new:
        via = f" ({source})" if source and source != model.spec.modelUri else ""
        events.append(("VersionCreated", f"version {version.version} created from the spec{via}"))
    target, mono = version.version, time.monotonic()

    for run in runs:  # replicas that ended unasked: replace them, after a backoff
        if run.status.phase.is_terminal() and run.uid not in mem.counted:
            mem.counted.add(run.uid)
            if not run.spec.stopRequested:
                why = f"replica {run.metadata.name} ended: {run.status.message or run.status.reason}"
                delay = mem.failed(version_of(run), why, mono)
                events.append(("ReplicaRestarted", f"{why}; a new one starts in {delay:g}s", "Warning"))
    live = [r for r in runs if not r.status.phase.is_terminal() and r.metadata.deletionTimestamp is None]
    _watch(serving, model, live)
    active = [r for r in live if not r.spec.stopRequested]
    for run in list(active):
        unhealthy = _unhealthy(serving, model, run)
        if unhealthy:
            active.remove(run)
            text = f"replica {run.metadata.name} {unhealthy}"
            delay = mem.failed(version_of(run), text, mono)
            stop_replica(ctx, run, f"{unhealthy}; replaced")
            att = run.status.attempts[-1]
            if att.handle:
                ctx.runtime.stop(att.handle, 0)  # it may hold connections it never answers
            events.append(("ReplicaRestarted", f"{text}; replaced in {delay:g}s", "Warning"))

    token = serving.listener_token(model.uid)
    mine = [
        r for r in active
        if version_of(r) == target and r.metadata.annotations.get(LISTENER_ANNOTATION) == token
    ]  # fmt: skip
    others = [r for r in active if r not in mine]
    ready = [r for r in mine if _ready(serving, model, r)]
    if st.desiredReplicas and not ready:  # idle time counts while it serves, not while it starts
        serving.mark_active(model.uid)
    desired = _desired(serving, model, st, mono, mem)
    if desired != st.desiredReplicas and st.observedGeneration is not None:
        events.append(("Scaled", f"desired replicas {st.desiredReplicas} -> {desired}"))
    serving.set_idle(model.uid, desired == 0 and model.spec.autoscaling is not None)

    if len(mine) < desired and mono >= mem.next_start:
        for _ in range(desired - len(mine)):
            mine.append(create_replica(ctx, model, version))
    elif len(mine) > desired:  # the not ready first, then the oldest
        extra = sorted(mine, key=lambda r: (r in ready, r.metadata.creationTimestamp))
        for run in extra[: len(mine) - desired]:
            stop_replica(ctx, run, "scaled down")
            mine.remove(run)
            if run in ready:
                ready.remove(run)

    if st.currentVersion != target and len(ready) >= desired:
        was = st.currentVersion
        st.currentVersion = target
        mem.rollout_since.pop(target, None)
        text = f"version {target} serves" + (f" (was version {was})" if was is not None else "")
        events.append(("RolledOut", f"{text}: {len(ready)} replica(s) ready"))
    if st.currentVersion == target and len(ready) >= desired:
        for run in others:
            old = version_of(run)
            stop_replica(ctx, run, f"replaced by version {target}" if old != target else "replaced")
        others = []
    if mem.failures and mono - mem.last_failure >= HEALTHY_RESET and len(ready) >= desired:
        mem.failures = 0
    prune_ended(ctx, runs, KEEP_ENDED)

    st.targetVersion = target if st.currentVersion != target else None
    st.replicas = len(mine) + len(others)
    st.readyReplicas = len(ready) + sum(_ready(serving, model, r) for r in others)
    st.desiredReplicas = desired
    st.observedGeneration = m.generation
    st.runs = [r.metadata.name for r in mine + others]
    timeout = serving.settings.ready_timeout_seconds
    events += _phase(st, model, mem, target, desired, len(ready), mono, timeout)
    if unresolved is not None:
        st.reason, st.message = "ModelNotFound", f"{unresolved}; version {version.version} keeps serving"
        if model.status.reason != "ModelNotFound":
            events.append(("ModelNotFound", st.message, "Warning"))
    if events or st.model_dump(mode="json") != model.status.model_dump(mode="json"):
        model.status = st
        ctx.save(model, *events)
    wait = serving.settings.probe_seconds
    return min(wait, max(0.05, mem.next_start - mono)) if mem.next_start > mono else wait


def _watch(serving: Serving, model: Model, live: list[Run]) -> None:
    serving.watch(
        model.uid,
        [
            Replica(r.uid, r.status.attempts[-1].attempt, version_of(r))
            for r in live
            if r.status.phase == Phase.RUNNING and r.status.attempts
        ],
    )


def _health(serving: Serving, model: Model, run: Run) -> ReplicaHealth | None:
    if run.status.phase != Phase.RUNNING or not run.status.attempts:
        return None
    return serving.health(model.uid, run.uid, run.status.attempts[-1].attempt)


def _ready(serving: Serving, model: Model, run: Run) -> bool:
    health = _health(serving, model, run)
    return bool(health and health.ready)


def _unhealthy(serving: Serving, model: Model, run: Run) -> str | None:
    """Why a running replica must be replaced: it stopped answering /ready, or never got ready in time."""
    health = _health(serving, model, run)
    if health is None:
        return None
    if health.ever_ready and health.failures >= LIVENESS_FAILURES:
        return f"failed {health.failures} readiness probes in a row"
    started = run.status.attempts[-1].startedAt
    limit = serving.settings.ready_timeout_seconds
    if not health.ever_ready and started and (time.time() - started.timestamp()) > limit:
        return f"was not ready within ready_timeout_seconds={limit:g}"
    return None


def _desired(serving: Serving, model: Model, st: ModelStatus, mono: float, mem: _Memory) -> int:
    in_flight = serving.in_flight(model.uid)
    idle = time.time() - serving.last_activity(model.uid)
    return desired_replicas(model.spec, st.desiredReplicas, in_flight, idle, mono, mem.scale)


def _phase(
    st: ModelStatus, model: Model, mem: _Memory, target: int, desired: int, ready: int, mono: float,
    timeout: float,
) -> list[EventSpec]:  # fmt: skip
    """Phase, reason and message from what the pass found; a Warning event when a rollout stalls."""
    events: list[EventSpec] = []
    failing = f"; last failure: {mem.last_error}" if mem.failures else ""
    if st.currentVersion is None:
        st.phase, st.reason = "Pending", "ReplicasStarting"
        st.message = f"waiting for version {target}'s replicas: {ready}/{desired} ready{failing}"
    elif st.currentVersion != target:
        since = mem.rollout_since.setdefault(target, mono)
        stalled = mono - since > timeout or mem.target_failures.get(target, 0) >= STALLED_AFTER_FAILURES
        st.phase, st.reason = "Updating", "RollingOut"
        st.message = (
            f"version {target} starting ({ready}/{desired} ready); version {st.currentVersion} serves"
        )
        if stalled:
            st.reason = "RolloutStalled"
            st.message = (
                f"version {target} does not get ready ({ready}/{desired}){failing}; "
                f"version {st.currentVersion} keeps serving"
            )
            if target not in mem.stalled:
                mem.stalled.add(target)
                events.append(("RolloutStalled", st.message, "Warning"))
    elif desired == 0 and st.replicas == 0:
        st.phase, st.reason = "ScaledToZero", "NoReplicas"
        st.message = (
            "no replica: the next request starts one (it waits meanwhile)"
            if model.spec.autoscaling
            else "replicas: 0"
        )
    elif ready == 0 and desired > 0:
        st.phase, st.reason = "Pending", "NoReplicaReady"
        st.message = f"no replica of version {target} is ready{failing}"
    else:
        st.phase, st.reason = "Ready", "Serving"
        st.message = f"version {target} serves at {st.url} with {ready} replica(s) ready"
    return events


def _unresolvable(ctx: Context, model: Model, st: ModelStatus, why: str) -> float:
    """The spec names a model that cannot be found, and no version was ever made: nothing to serve."""
    if (st.phase, st.message) != ("Failed", why):
        st.phase, st.reason, st.message = "Failed", "ModelNotFound", why
        model.status = st
        ctx.save(model, ("ModelNotFound", why, "Warning"))
    return 5.0


def _delete(ctx: Context, model: Model, runs: list[Run]) -> float | None:
    """Stop the replicas (drained), then close the listener and remove the model."""
    serving = ctx.serving
    assert serving is not None
    serving.set_idle(model.uid, False)
    if delete_all(ctx, runs):
        return 0.5
    serving.close(model.uid)
    _memory.pop(model.uid, None)
    ctx.store.delete_model_keys(model.uid)  # first: a kill -9 between the two deletes them again
    ctx.store.delete(model.uid)
    ctx.notifier.touch(model.uid)
    return None
