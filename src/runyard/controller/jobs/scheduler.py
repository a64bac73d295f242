"""The job scheduler: its own thread, beside the controller's, holding every scheduled job's next fire
time in a heap, so that a tick costs what is due, not what exists.

Every fire goes through store.fire_job, which claims it atomically (keyed by job and instant, or by the
upstream runs): a scheduler that restarts, or a second one racing it, can only get Duplicate for a fire
that was made. What is decided (which instant, missed or late, dependencies ready) is in decide.py."""

from __future__ import annotations

import functools
import heapq
import logging
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from runyard.controller.context import Context
from runyard.controller.jobs.decide import dependency_fire, due, on_cycle, schedule_fire
from runyard.core import cron
from runyard.core.clock import now
from runyard.core.resources import Job
from runyard.store.jobs import Fire, FireResult

log = logging.getLogger("runyard.scheduler")

# The clock a scheduler reads when given none. Tests of a real server process replace it (tests/jobs/warp.py)
# to make minutes pass in seconds; everything else reads core.clock.
CLOCK: Callable[[], datetime] = now

MAX_WAIT = 1.0  # real seconds between two looks at the clock (a warped clock runs faster than its waits)
FIRE_BATCH = 50  # fires per tick, claimed in one transaction; the next tick follows at once
TICK_WINDOW = 1000
DELAY_WINDOW = 10000
PRUNE_EVERY = 600.0  # seconds between prunes of fire records
KEEP_FIRES = timedelta(days=30)
RETRY_FIRST, RETRY_CAP = 0.5, 60.0  # seconds (of the scheduler's clock) before a failed fire is tried again
Key = tuple[str, str]  # (project, job name)
T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _reconciled(job: Job) -> bool:
    """The reconciler has seen this generation and set where its schedule counts from."""
    return job.status.scheduleFrom is not None and job.status.observedGeneration == job.metadata.generation


def _percentiles(values: list[float], keys: tuple[str, ...]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(keys)
    s = sorted(values)
    at = {"p50": s[(len(s) - 1) // 2], "p99": s[min(len(s) - 1, int(len(s) * 0.99))], "max": s[-1]}
    return {k: (values[-1] if k == "last" else at[k]) for k in keys}


class Scheduler:
    def __init__(self, ctx: Context, clock: Callable[[], datetime] | None = None):
        self.ctx = ctx
        self.clock = clock or CLOCK
        self.work: Counter[str] = Counter()  # cron steps and fire_job calls made: what the ticks cost
        self._inbox: deque[tuple[str, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded = False
        # Set while fires due at once are still being claimed: the controller holds off its resync (which
        # launches the runs already made) until they are, or for a few ticks at most (see loop.py).
        self.bursting = False
        self._jobs: dict[str, Job] = {}  # every job known, scheduled or not
        self._uids: dict[Key, str] = {}
        self._dependents: defaultdict[Key, set[str]] = defaultdict(set)  # upstream -> uids depending on it
        self._last: dict[str, datetime] = {}  # the last instant claimed, per job (loaded, then fired)
        self._dep_since: dict[str, datetime] = {}  # when the job last fired after its dependencies
        self._base: dict[str, datetime] = {}  # a scheduled job fires strictly after this
        self._next: dict[str, datetime] = {}  # a scheduled job's next instant: the heap's live entries
        self._heap: list[tuple[datetime, str]] = []
        self._failures: dict[str, int] = {}  # uid -> fires failed in a row
        self._to_touch: dict[str, None] = {}  # jobs fired and runs made, for the controller: see flush()
        self._store_seconds = 0.0  # of the current tick: time spent in the store
        self._stats_lock = threading.Lock()
        self._ticks: deque[float] = deque(maxlen=TICK_WINDOW)
        self._tick_count = 0
        self._fires: Counter[str] = Counter({"Created": 0, "Skipped": 0, "Missed": 0, "Duplicate": 0})
        self._delays: deque[float] = deque(maxlen=DELAY_WINDOW)
        self._last_prune = 0.0
        self._origin: tuple[float, datetime] | None = None  # (monotonic, clock) to learn the clock's rate

    # The interface the controller and the reconciler use (any thread).

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="runyard-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def update(self, job: Job) -> None:
        """The reconciler saw the job (new, changed, resumed): schedule it anew."""
        self._post("update", job)

    def forget(self, job_uid: str) -> None:
        """The job is gone."""
        self._post("forget", job_uid)

    def job_succeeded(self, job: Job) -> None:
        """A run of `job` succeeded: its dependents may fire."""
        self._post("succeeded", job)

    def flush(self) -> None:
        """Tell the controller of the jobs fired and the runs made since the last flush. The thread flushes
        once what is due has all been fired: a burst's runs and job statuses would otherwise compete with
        its remaining fires for the store's writer, and delay them."""
        touched, self._to_touch = self._to_touch, {}
        for uid in touched:
            self.ctx.notifier.touch(uid)

    def wake(self) -> None:
        """Look at the clock now (a test moved it)."""
        self._wake.set()

    def stats(self) -> dict:
        """Figures for GET /scheduler and the benchmark. A tick is a pass that had work (commands from the
        reconciler, or due fires); tickSeconds is the scheduler's own cost of it (due entries off the heap,
        cron steps, decisions), without the store's transactions: what those cost the fires shows in
        fireDelaySeconds (the scheduler's clock when fire_job returned Created, less the instant)."""
        with self._stats_lock:
            ticks, delays = list(self._ticks), list(self._delays)
            return {
                "jobs": len(self._next),
                "ticks": self._tick_count,
                "tickSeconds": _percentiles(ticks, ("last", "p50", "p99", "max")),
                "fires": dict(self._fires),
                "fireDelaySeconds": _percentiles(delays, ("p50", "p99", "max")),
            }

    def _post(self, what: str, arg: Any) -> None:
        self._inbox.append((what, arg))
        self._wake.set()

    # The scheduler's thread (tests call load() and tick() directly, with an injected clock).

    def load(self) -> None:
        """Every job and its fire state, from the store: compute the next fires (at start; seconds for
        10,000 jobs, so never in the constructor). Jobs not reconciled yet are touched, and scheduled when
        the reconciler calls update()."""
        jobs = self.ctx.store.list(Job)
        states = self.ctx.store.job_states()
        for job in jobs:
            state = states.get(job.uid)
            if state is not None:
                if state.last_schedule_at is not None:
                    self._last[job.uid] = state.last_schedule_at
                if state.last_dependency_at is not None:
                    self._dep_since[job.uid] = state.last_dependency_at
            self._index(job)
            if not _reconciled(job) and job.metadata.deletionTimestamp is None:
                self.ctx.notifier.touch(job.uid)
            self._schedule(job)
        self.loaded = True
        self._evaluate([job.uid for job in jobs if job.spec.dependsOn])
        log.info("job scheduler loaded %d jobs, %d scheduled", len(jobs), len(self._next))

    def tick(self) -> bool:
        """One pass: the reconciler's commands, then what is due (at most FIRE_BATCH fires, claimed in one
        store transaction). True when more is due at once."""
        started = time.perf_counter()
        self._store_seconds = 0.0
        commands = self._drain()
        current = self.clock()
        taken: dict[str, datetime] = {}
        while self._heap and len(taken) < FIRE_BATCH:
            at, uid = self._heap[0]
            if self._next.get(uid) != at or uid in taken:
                heapq.heappop(self._heap)  # superseded by a later update()
                continue
            if at > current:
                break
            heapq.heappop(self._heap)
            taken[uid] = at
        if taken:
            self._fire_due(taken, current)
        if commands or taken:
            with self._stats_lock:
                self._tick_count += 1
                self._ticks.append(max(0.0, time.perf_counter() - started - self._store_seconds))
        return len(taken) >= FIRE_BATCH

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                if not self.loaded:
                    self.load()
                more = self.tick()
                self.bursting = more
                self._housekeeping()
                backoff = 0.5
            except Exception as exc:  # e.g. the database is down: keep the thread, try again
                log.warning("job scheduler pass failed (%s: %s); retrying in %gs", type(exc).__name__, exc,
                            backoff)  # fmt: skip
                self.flush()
                self.bursting = False
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, 30.0)
                continue
            if not more:
                self.flush()
                self._wake.wait(self._wait_seconds())
                self._wake.clear()

    def _wait_seconds(self) -> float:
        """Real seconds until the next instant due, by the clock's observed rate; never over MAX_WAIT."""
        if self._inbox:
            return 0.0
        mono, current = time.monotonic(), self.clock()
        if self._origin is None:
            self._origin = (mono, current)
        while self._heap and self._next.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        if not self._heap:
            return MAX_WAIT
        ahead = (self._heap[0][0] - current).total_seconds()
        real = mono - self._origin[0]
        if real < 0.5:
            return max(0.0, min(ahead, 0.1))  # the rate is not known yet: look again soon
        rate = max(1.0, (current - self._origin[1]).total_seconds() / real)
        return max(0.0, min(ahead / rate, MAX_WAIT))

    def _housekeeping(self) -> None:
        if time.monotonic() - self._last_prune >= PRUNE_EVERY:
            self._last_prune = time.monotonic()
            pruned = self.ctx.store.prune_job_fires(now() - KEEP_FIRES)
            if pruned:
                log.info("pruned %d job fire records older than %s", pruned, KEEP_FIRES)

    # Commands and bookkeeping, on the scheduler's thread.

    def _drain(self) -> int:
        n = 0
        succeeded: list[Job] = []
        dependents: set[str] = set()
        while self._inbox:
            what, arg = self._inbox.popleft()
            n += 1
            if what == "update":
                if self._newer(arg):
                    self._index(arg)
                    self._schedule(arg)
            elif what == "forget":
                self._drop(arg)
            elif what == "succeeded":
                succeeded.append(arg)
            elif what == "evaluate":
                dependents |= arg
        for job in succeeded:
            if self._newer(job):
                self._index(job)
            dependents |= self._dependents.get((job.metadata.project, job.metadata.name), set())
        if dependents:
            try:
                self._evaluate(sorted(dependents))
            except Exception:
                self._inbox.appendleft(("evaluate", dependents))  # after the back-off, not lost
                raise
        return n

    def _newer(self, job: Job) -> bool:
        """Not older than the copy held (an update() queued before load() read a newer one)."""
        held = self._jobs.get(job.uid)
        return held is None or (held.metadata.resourceVersion or 0) <= (job.metadata.resourceVersion or 0)

    def _index(self, job: Job) -> None:
        uid, key = job.uid, (job.metadata.project, job.metadata.name)
        old = self._jobs.get(uid)
        if old is not None:
            for name in old.spec.dependsOn:
                self._dependents[(old.metadata.project, name)].discard(uid)
        self._jobs[uid] = job
        self._uids[key] = uid
        for name in job.spec.dependsOn:
            self._dependents[(job.metadata.project, name)].add(uid)

    def _drop(self, uid: str) -> None:
        job = self._jobs.pop(uid, None)
        if job is not None:
            key = (job.metadata.project, job.metadata.name)
            if self._uids.get(key) == uid:
                del self._uids[key]
            for name in job.spec.dependsOn:
                self._dependents[(job.metadata.project, name)].discard(uid)
        self._failures.pop(uid, None)
        for table in (self._last, self._dep_since, self._base, self._next):
            table.pop(uid, None)

    def _next_fire(self, schedule: str, tz: str, after: datetime) -> datetime:
        self.work["next_fire"] += 1
        return cron.next_fire(schedule, tz, after)

    def _schedule(self, job: Job) -> None:
        """Put the job's next instant in the heap, from max(last claimed, status.scheduleFrom); or take it
        out (no schedule, suspended, being deleted, not reconciled yet)."""
        uid, spec = job.uid, job.spec
        if not spec.schedule or spec.suspend or job.metadata.deletionTimestamp or not _reconciled(job):
            self._next.pop(uid, None)
            self._base.pop(uid, None)
            return
        start = job.status.scheduleFrom
        assert start is not None
        last = self._last.get(uid)
        base = max(start, last) if last is not None else start
        if self._base.get(uid) == base and uid in self._next:
            return  # nothing moved (a status update of another kind)
        self._base[uid] = base
        self._set_next(uid, self._next_fire(spec.schedule, spec.timeZone, base))

    def _set_next(self, uid: str, at: datetime) -> None:
        if self._next.get(uid) != at:
            self._next[uid] = at
            heapq.heappush(self._heap, (at, uid))

    def _fire_due(self, taken: dict[str, datetime], current: datetime) -> None:
        """Fire the due window of each job taken off the heap (once, for its latest instant), then put its
        next instant back; a job whose fire failed is tried again after a backoff."""
        plans = []
        for uid in taken:
            job = self._jobs[uid]
            assert job.spec.schedule is not None
            # The heap holds next_fire(base) itself, unless it holds the time to try a failed fire again.
            first = None if uid in self._failures else taken[uid]
            window = due(
                job.spec.schedule, job.spec.timeZone, self._base[uid], current, self._next_fire, first
            )
            plans.append((uid, window, schedule_fire(job, window, current)))
        done: set[str] = set()
        try:
            fires = [fire for _, _, fire in plans if fire is not None]
            outcomes = dict(zip([f.job.uid for f in fires], self._fire_all(fires), strict=True))
            ahead = [
                uid for uid, r in outcomes.items() if isinstance(r, FireResult) and r.outcome == "Duplicate"
            ]
            states = self._timed(self.ctx.store.job_states, ahead) if ahead else {}
            for uid, window, _ in plans:
                result = outcomes.get(uid)
                if isinstance(result, Exception):
                    self._retry_later(uid, current, result)
                    done.add(uid)
                    continue
                self._failures.pop(uid, None)
                base = window.latest or self._base[uid]
                following = window.following
                state = states.get(uid)  # another scheduler went further: go on from its last claim
                if state is not None and state.last_schedule_at is not None and state.last_schedule_at > base:
                    base = state.last_schedule_at
                    if following <= base:
                        job = self._jobs[uid]
                        assert job.spec.schedule is not None
                        following = self._next_fire(job.spec.schedule, job.spec.timeZone, base)
                self._last[uid] = self._base[uid] = base
                self._set_next(uid, following)
                done.add(uid)
        finally:
            for uid, at in taken.items():
                if uid not in done and self._next.get(uid) == at:
                    heapq.heappush(self._heap, (at, uid))  # not handled: it is still due

    def _retry_later(self, uid: str, current: datetime, exc: Exception) -> None:
        failures = self._failures[uid] = self._failures.get(uid, 0) + 1
        delay = min(RETRY_CAP, RETRY_FIRST * 2 ** (failures - 1))
        why = f"{type(exc).__name__}: {exc}"
        log.warning(
            "firing job %s failed (%s); trying again in %gs", self._jobs[uid].metadata.name, why, delay
        )
        self._set_next(uid, current + timedelta(seconds=delay))  # its window is worked out again then

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call: its time is the store's, not the tick's own."""
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._store_seconds += time.perf_counter() - t

    def _fire_all(self, fires: list[Fire]) -> list[FireResult | Exception]:
        """Claim the fires in one transaction; if that fails, each on its own, so that one job's failure
        is only its own. Then count them and touch the jobs (and the runs made)."""
        if not fires:
            return []
        results: list[FireResult | Exception]
        try:
            results = list(self._timed(self.ctx.store.fire_jobs, fires))
        except Exception as exc:
            if len(fires) == 1:
                results = [exc]
            else:
                results = []
                for fire in fires:
                    try:
                        results.append(self._timed(self.ctx.store.fire_job, fire))
                    except Exception as one:
                        results.append(one)
        self.work["fire_job"] += len(fires)
        for fire, result in zip(fires, results, strict=True):
            if isinstance(result, FireResult):
                self._fired(fire, result)
        return results

    def _fired(self, fire: Fire, result: FireResult) -> None:
        with self._stats_lock:
            self._fires[result.outcome] += 1
            if result.outcome == "Created" and fire.scheduled_at is not None:
                self._delays.append((self.clock() - fire.scheduled_at).total_seconds())
        job = fire.job
        self._to_touch[job.uid] = None
        if result.outcome == "Created" and result.run is not None:
            self._to_touch[result.run.uid] = None
        for uid in result.replaced:  # concurrencyPolicy Replace asked them to stop
            self._to_touch[uid] = None
        level = logging.DEBUG if result.outcome in ("Created", "Duplicate") else logging.INFO
        log.log(level, "job %s/%s %s: %s", job.metadata.project, job.metadata.name, result.outcome,
                result.message)  # fmt: skip

    def _evaluate(self, uids: list[str]) -> None:
        """Fire the dependency jobs among `uids` whose dependencies all succeeded since they last ran
        after them (one store query for all of them)."""
        candidates: list[tuple[Job, dict[str, str]]] = []
        for uid in uids:
            job = self._jobs.get(uid)
            if job is None or not job.spec.dependsOn or job.spec.suspend or job.metadata.deletionTimestamp:
                continue
            project = job.metadata.project
            upstream = {name: self._uids.get((project, name)) for name in job.spec.dependsOn}
            if any(u is None for u in upstream.values()):
                continue  # a dependency does not exist (the reconciler's condition says which)
            if on_cycle(job.metadata.name, functools.partial(self._depends_on, project)):
                log.warning("job %s/%s is on a dependsOn cycle: it never fires from its dependencies",
                            project, job.metadata.name)  # fmt: skip
                continue
            candidates.append((job, {n: u for n, u in upstream.items() if u is not None}))
        if not candidates:
            return
        wanted = sorted({u for _, ups in candidates for u in ups.values()})
        successes = self._timed(self.ctx.store.latest_successes, wanted)
        fires: list[Fire] = []
        for job, ups in candidates:
            marks = [t for t in (job.metadata.creationTimestamp, self._dep_since.get(job.uid)) if t]
            since = max(marks) if marks else EPOCH
            fire = dependency_fire(job, {n: successes.get(u) for n, u in ups.items()}, since)
            if fire is not None:
                fires.append(fire)
        results = self._fire_all(fires)
        states = self._timed(self.ctx.store.job_states, [f.job.uid for f in fires]) if fires else {}
        for fire, result in zip(fires, results, strict=True):
            state = states.get(fire.job.uid)
            if state is not None and state.last_dependency_at is not None:
                self._dep_since[fire.job.uid] = state.last_dependency_at
            if isinstance(result, Exception):
                raise result  # the whole evaluation is tried again (an existing claim comes back Duplicate)

    def _depends_on(self, project: str, name: str) -> list[str]:
        uid = self._uids.get((project, name))
        job = self._jobs.get(uid) if uid else None
        return list(job.spec.dependsOn) if job else []
