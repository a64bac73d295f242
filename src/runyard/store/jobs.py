"""Job fires, claimed atomically: one transaction locks the job's state row, checks that the fire is new
(a scheduled instant later than the last one claimed, a dependency or manual key not seen), applies the
concurrency policy against the job's active runs, creates the run and records the fire. Two controllers
(a restart overlapping the old process) or a kill -9 between any two steps can therefore neither double a
fire nor leave a run without its claim, or a claim without its run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from runyard.core.clock import aware, now
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Job, ObjectMeta, OwnerReference, Run, RunSpec
from runyard.store.base import EventSpec
from runyard.store.changes import MODIFIED
from runyard.store.events import EVENTS, event_values
from runyard.store.resources import ResourceStore, to_resource
from runyard.store.tables import JobFireRow, JobStateRow, ResourceRow

Trigger = Literal["schedule", "manual", "dependency"]
Outcome = Literal["Created", "Skipped", "Missed", "Duplicate"]
RESOURCES = cast(Table, ResourceRow.__table__)
STATES = cast(Table, JobStateRow.__table__)
FIRES = cast(Table, JobFireRow.__table__)
TERMINAL_PHASES = [p.value for p in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)]
JOB_LABEL = "runyard.dev/job"  # on every run a job creates: `runyard ps -l runyard.dev/job=NAME`
TRIGGER_ANNOTATION = "runyard.dev/trigger"
SCHEDULED_ANNOTATION = "runyard.dev/scheduled-at"

# A fire's statements, built once: building them per fire (SQLAlchemy's coercions) cost more than the SQL.
_STATE = select(STATES).where(STATES.c.job_uid == bindparam("job_uid")).with_for_update()
_ALIVE = select(RESOURCES.c.uid).where(
    RESOURCES.c.uid == bindparam("job_uid"), RESOURCES.c.deletion_timestamp.is_(None)
)
_ACTIVE = (
    select(RESOURCES.c.uid, RESOURCES.c.name)
    .where(
        RESOURCES.c.owner_uid == bindparam("job_uid"),
        RESOURCES.c.kind == "Run",
        RESOURCES.c.deletion_timestamp.is_(None),
        (RESOURCES.c.phase.is_(None)) | (RESOURCES.c.phase.not_in(TERMINAL_PHASES)),
    )
    .order_by(RESOURCES.c.created_at)
)
_MARK = update(STATES).where(STATES.c.job_uid == bindparam("state_job_uid"))


@dataclass
class Fire:
    """One trigger of a job. `key` names it uniquely within the job: the scheduled instant (ISO, UTC) for a
    schedule, 'manual:<request key>' for a user's trigger, 'after:<run uids>' for dependencies."""

    job: Job
    trigger: Trigger
    key: str
    scheduled_at: datetime | None = None
    params: dict[str, str] = field(default_factory=dict)
    events: list[EventSpec] = field(default_factory=list)  # said on the job with the fire (missed fires…)
    missed: str | None = None  # record it as Missed, with this message, and create no run


@dataclass
class FireResult:
    outcome: Outcome
    message: str = ""
    run: Run | None = None  # the run it created (Created), or that the same key created before (Duplicate)
    replaced: list[str] = field(
        default_factory=list
    )  # uids of runs asked to stop (concurrencyPolicy Replace)


@dataclass
class JobState:
    job_uid: str
    next_seq: int
    last_schedule_at: datetime | None
    last_dependency_at: datetime | None
    dependency_key: str | None


def fire_run(fire: Fire, name: str) -> Run:
    """The Run of a fire, whichever store keeps it: the job's template with the fire's parameters in its
    environment, the job's labels plus the job label, the trigger annotated, owned by the job."""
    job, m = fire.job, fire.job.metadata
    annotations: dict[str, str] = {TRIGGER_ANNOTATION: fire.trigger}
    if fire.scheduled_at is not None:
        annotations[SCHEDULED_ANNOTATION] = fire.scheduled_at.isoformat()
    template = job.spec.template.model_dump()
    template["env"] = {**template["env"], **fire.params}
    return Run(
        metadata=ObjectMeta(
            name=name,
            project=m.project,
            labels={**m.labels, JOB_LABEL: m.name},
            annotations=annotations,
            ownerReferences=[OwnerReference(kind="Job", name=m.name, uid=job.uid)],
        ),
        spec=RunSpec(**template),
    )


def run_name(job_name: str, seq: int) -> str:
    suffix = f"-{seq}"
    return job_name[: 63 - len(suffix)].rstrip("-") + suffix


class JobStore(ResourceStore):
    def fire_job(self, fire: Fire) -> FireResult:
        return self.fire_jobs([fire])[0]

    def fire_jobs(self, fires: list[Fire]) -> list[FireResult]:
        """Several fires in one transaction (a burst due at one instant pays for one commit and one turn
        of the writer, not hundreds). When one of them hits a constraint (two first fires of a job made its
        state row at once; a run name taken), each is tried again in a transaction of its own."""
        try:
            with self.connect(write=True) as conn:
                return [self._fire(conn, fire) for fire in fires]
        except IntegrityError:
            results = []
            for fire in fires:
                try:
                    with self.connect(write=True) as conn:
                        results.append(self._fire(conn, fire, careful=True))
                except IntegrityError:  # the state row a concurrent first fire made is there now
                    with self.connect(write=True) as conn:
                        results.append(self._fire(conn, fire, careful=True))
            return results

    def _fire(self, conn: Connection, fire: Fire, careful: bool = False) -> FireResult:
        """`careful`: look for a clash before inserting, instead of letting the constraint find it."""
        job = fire.job
        state = self._locked_state(conn, job)
        alive = conn.execute(
            select(RESOURCES.c.uid).where(
                RESOURCES.c.uid == job.uid, RESOURCES.c.deletion_timestamp.is_(None)
            )
        ).first()
        if alive is None:
            return FireResult("Skipped", f"job {job.metadata.name!r} is gone or being deleted")
        dup = self._duplicate(conn, fire, state, careful)
        if dup is not None:
            return dup
        marks = self._marks(fire)
        if fire.missed is not None:
            warning = (Reason.MISSED_SCHEDULE, fire.missed, "Warning")
            self._record_fire(conn, fire, "Missed", fire.missed, marks, [warning])
            return FireResult("Missed", fire.missed)
        active = self._active_runs(conn, job.uid)
        policy = job.spec.concurrencyPolicy
        if active and policy == "Forbid":
            names = ", ".join(name for _, name in active)
            msg = f"skipped: run {names} is still active (concurrencyPolicy Forbid)"
            self._record_fire(conn, fire, "Skipped", msg, marks, [(Reason.FIRE_SKIPPED, msg)])
            return FireResult("Skipped", msg)
        replaced = [uid for uid, _ in active] if policy == "Replace" else []
        for uid in replaced:
            self._request_stop(conn, uid, f"replaced by a new run of job {job.metadata.name}")
        run = self._new_run(conn, fire, state.next_seq, careful)
        created = self._insert_resource(conn, run, [(Reason.CREATED, self._created_text(fire))])
        note = f"created run {created.metadata.name} ({self._trigger_text(fire)})"
        if replaced:
            note += f"; stopping {', '.join(name for _, name in active)} (concurrencyPolicy Replace)"
        marks["next_seq"] = state.next_seq + 1
        self._record_fire(conn, fire, "Created", note, marks, [(Reason.FIRED, note)], created)
        return FireResult("Created", note, created, replaced)

    @staticmethod
    def _locked_state(conn: Connection, job: Job) -> Any:
        """The job's state row, locked until the transaction ends (made on its first fire)."""
        state = conn.execute(_STATE, {"job_uid": job.uid}).first()
        if state is None:
            conn.execute(
                insert(STATES),
                {
                    "job_uid": job.uid,
                    "project": job.metadata.project,
                    "job_name": job.metadata.name,
                    "next_seq": 1,
                    "webhook_secret": secrets.token_hex(32),
                    "created_at": now(),
                },
            )
            state = conn.execute(_STATE, {"job_uid": job.uid}).first()
        return state

    def _duplicate(self, conn: Connection, fire: Fire, state: Any, careful: bool) -> FireResult | None:
        """The fire was claimed before (by this or another controller): say what came of it. A scheduled
        or dependency fire is known by the state row; a manual one by its key (and the unique constraint
        on keys catches any other, unless `careful` looks first)."""
        last = aware(state.last_schedule_at)
        at = fire.scheduled_at
        if fire.trigger == "schedule" and last is not None and at is not None and at <= last:
            return self._earlier(conn, fire, f"the fire at {at.isoformat()} was claimed")
        if fire.trigger == "dependency" and state.dependency_key == fire.key:
            return self._earlier(conn, fire, "already ran after these runs")
        if fire.trigger != "manual" and not careful:
            return None
        row = conn.execute(
            select(FIRES).where(FIRES.c.job_uid == fire.job.uid, FIRES.c.fire_key == fire.key)
        ).first()
        return self._earlier(conn, fire, "already fired", row) if row is not None else None

    def _earlier(self, conn: Connection, fire: Fire, msg: str, row: Any = None) -> FireResult:
        if row is None:
            row = conn.execute(
                select(FIRES).where(FIRES.c.job_uid == fire.job.uid, FIRES.c.fire_key == fire.key)
            ).first()
        run = None
        if row is not None and row.run_uid:
            got = conn.execute(select(RESOURCES).where(RESOURCES.c.uid == row.run_uid)).first()
            if got is not None:
                run = cast(Run, to_resource(got))
        return FireResult("Duplicate", row.message if row is not None else msg, run)

    @staticmethod
    def _marks(fire: Fire) -> dict[str, Any]:
        """What the job's state remembers of this fire, so that it is never made again."""
        if fire.trigger == "schedule":
            return {"last_schedule_at": fire.scheduled_at}
        if fire.trigger == "dependency":
            return {"dependency_key": fire.key, "last_dependency_at": now()}
        return {}

    @staticmethod
    def _active_runs(conn: Connection, job_uid: str) -> list[tuple[str, str]]:
        return [(r.uid, r.name) for r in conn.execute(_ACTIVE, {"job_uid": job_uid}).all()]

    def _request_stop(self, conn: Connection, uid: str, why: str) -> None:
        """As `runyard stop` does: the run controller stops it (spec.stopRequested), in this transaction."""
        row = conn.execute(select(RESOURCES).where(RESOURCES.c.uid == uid)).first()
        if row is None or row.spec.get("stopRequested"):
            return
        spec = {**row.spec, "stopRequested": True}
        conn.execute(
            update(RESOURCES)
            .where(RESOURCES.c.uid == uid)
            .values(spec=spec, resource_version=RESOURCES.c.resource_version + 1, updated_at=now())
        )
        run = to_resource(row)
        conn.execute(insert(EVENTS), [event_values(uid, run, (Reason.STOP_REQUESTED, why))])
        self._record(conn, uid, run, MODIFIED)

    def _new_run(self, conn: Connection, fire: Fire, seq: int, careful: bool) -> Run:
        m = fire.job.metadata
        name = run_name(m.name, seq)
        taken = select(RESOURCES.c.uid).where(
            RESOURCES.c.kind == "Run", RESOURCES.c.project == m.project, RESOURCES.c.name == name
        )
        if careful and conn.execute(taken).first() is not None:  # e.g. an Experiment named like it
            name = run_name(m.name, seq)[: 63 - 5] + "-" + secrets.token_hex(2)
        return fire_run(fire, name)

    def _record_fire(
        self,
        conn: Connection,
        fire: Fire,
        outcome: Outcome,
        message: str,
        marks: dict[str, Any],
        events: list[EventSpec],
        run: Run | None = None,
    ) -> None:
        conn.execute(
            insert(FIRES),
            {
                "job_uid": fire.job.uid,
                "fire_key": fire.key,
                "trigger": fire.trigger,
                "scheduled_at": fire.scheduled_at,
                "fired_at": now(),
                "outcome": outcome,
                "run_uid": run.uid if run else None,
                "run_name": run.metadata.name if run else None,
                "message": message,
            },
        )
        if marks:
            conn.execute(_MARK, {"state_job_uid": fire.job.uid, **marks})
        conn.execute(
            insert(EVENTS), [event_values(fire.job.uid, fire.job, ev) for ev in [*fire.events, *events]]
        )

    @staticmethod
    def _trigger_text(fire: Fire) -> str:
        if fire.trigger == "schedule" and fire.scheduled_at is not None:
            return f"scheduled for {fire.scheduled_at.isoformat()}"
        if fire.trigger == "manual":
            params = ", ".join(f"{k}={v}" for k, v in fire.params.items())
            return "triggered by hand" + (f" with {params}" if params else "")
        return "its dependencies succeeded"

    def _created_text(self, fire: Fire) -> str:
        return f"created by Job {fire.job.metadata.name} ({self._trigger_text(fire)})"

    def job_state(self, job_uid: str) -> JobState | None:
        return self.job_states([job_uid]).get(job_uid)

    def job_states(self, job_uids: list[str] | None = None) -> dict[str, JobState]:
        """Each job's fire state (all jobs' when `job_uids` is None): what a scheduler starts from."""
        q = select(STATES)
        if job_uids is not None:
            q = q.where(STATES.c.job_uid.in_(job_uids))
        with self.connect() as conn:
            rows = conn.execute(q).all()
        return {
            r.job_uid: JobState(
                r.job_uid,
                r.next_seq,
                aware(r.last_schedule_at),
                aware(r.last_dependency_at),
                r.dependency_key,
            )
            for r in rows
        }

    def job_fires(self, job_uid: str, limit: int = 50) -> list[dict[str, Any]]:
        """The job's latest fires, newest first, each with the phase of its run (None: removed since)."""
        q = (
            select(FIRES, RESOURCES.c.phase)
            .outerjoin(RESOURCES, RESOURCES.c.uid == FIRES.c.run_uid)
            .where(FIRES.c.job_uid == job_uid)
            .order_by(FIRES.c.id.desc())
            .limit(limit)
        )
        with self.connect() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "trigger": r.trigger,
                "scheduledAt": aware(r.scheduled_at),
                "firedAt": aware(r.fired_at),
                "outcome": r.outcome,
                "run": r.run_name,
                "runUid": r.run_uid,
                "phase": r.phase if r.run_uid else None,
                "message": r.message,
            }
            for r in rows
        ]

    def webhook_secret(self, job: Job) -> str:
        """The job's secret that signs its webhook notifications (made with its state)."""
        try:
            with self.connect(write=True) as conn:
                return str(self._locked_state(conn, job).webhook_secret)
        except IntegrityError:  # made concurrently
            with self.connect() as conn:
                return str(
                    conn.execute(select(STATES.c.webhook_secret).where(STATES.c.job_uid == job.uid)).scalar()
                )

    def forget_job(self, job_uid: str) -> None:
        """A deleted job's state and fires go with it."""
        with self.connect(write=True) as conn:
            conn.execute(delete(FIRES).where(FIRES.c.job_uid == job_uid))
            conn.execute(delete(STATES).where(STATES.c.job_uid == job_uid))

    def prune_job_fires(self, before: datetime) -> int:
        """Fire records older than `before` (the state row keeps what dedupes later fires), and jobs' events
        as old: a job lives for years, and each fire says something."""
        with self.connect(write=True) as conn:
            conn.execute(delete(EVENTS).where(EVENTS.c.kind == "Job", EVENTS.c.time < before))
            return conn.execute(delete(FIRES).where(FIRES.c.fired_at < before)).rowcount or 0

    def latest_successes(self, job_uids: list[str]) -> dict[str, tuple[str, datetime]]:
        """Per job, its latest succeeded run that still exists: (run uid, finishedAt)."""
        if not job_uids:
            return {}
        q = select(RESOURCES.c.uid, RESOURCES.c.owner_uid, RESOURCES.c.status).where(
            RESOURCES.c.kind == "Run",
            RESOURCES.c.owner_uid.in_(job_uids),
            RESOURCES.c.phase == Phase.SUCCEEDED.value,
        )
        best: dict[str, tuple[str, datetime]] = {}
        with self.connect() as conn:
            for r in conn.execute(q).all():
                finished = (r.status or {}).get("finishedAt")
                at = aware(datetime.fromisoformat(finished)) if finished else None
                if at is None:
                    continue
                if r.owner_uid not in best or at > best[r.owner_uid][1]:
                    best[r.owner_uid] = (r.uid, at)
        return best
