"""What the API does with a job beyond its document: trigger it by hand, list its fires, and say when it
fires next. Firing goes through the store's one transaction (store/jobs.py fire_job), as the scheduler's
fires do, so a manual trigger obeys the same concurrency policy and is deduplicated by its request key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from runyard.core.clock import now
from runyard.core.cron import next_fires, zone
from runyard.core.errors import Conflict, FieldError, Invalid, NotFound, field_errors
from runyard.core.phases import Reason
from runyard.core.resources import ENV_NAME_RE, MAX_ARG_BYTES, Job, Run, RunTemplate
from runyard.services.auth import Principal
from runyard.services.notify import Notifier
from runyard.store import Store
from runyard.store.jobs import Fire

if TYPE_CHECKING:
    from runyard.store.kube.resources import KubeResources

RESERVED_PREFIX = "RUNYARD_"  # the platform's own variables (its URL, the run's token…) cannot be overridden
MAX_PARAMS = 256
LIST_HINT = "`runyard jobs list` lists the project's jobs"


@dataclass
class Triggered:
    run: Run
    created: bool  # False: the request key had triggered it before, and this is that run


def find_job(source: Store | KubeResources, project: str, name: str) -> Job:
    """The job, from the store or the cluster (`--kubernetes`), or a NotFound that names it and says how
    to see the jobs there are."""
    try:
        return cast(Job, source.get(Job, project, name))
    except NotFound:
        raise NotFound(f"job {name!r} not found in project {project!r}; {LIST_HINT}") from None


def check_params(job: Job, params: Any) -> dict[str, str]:
    """Parameters become environment variables of the run: each name a valid variable name not reserved by
    the platform, each value a string; with the template's env they must still fit exec's limits."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise Invalid("the trigger is invalid", [FieldError("params", "must be an object of NAME: value")])
    if len(params) > MAX_PARAMS:
        raise Invalid("the trigger is invalid", [FieldError("params", f"at most {MAX_PARAMS} parameters")])
    problems = [
        FieldError(f"params.{str(k)[:80]}", why) for k, v in params.items() if (why := _problem(k, v))
    ]
    if problems:
        raise Invalid("the trigger's parameters are invalid", problems)
    template = job.spec.template.model_dump()
    template["env"] = {**template["env"], **params}
    try:
        RunTemplate.model_validate(template)  # the run the fire makes must be valid: sizes in all
    except ValidationError as exc:
        raise Invalid(
            "the run these parameters make would be invalid",
            [FieldError("params", f"{e.field}: {e.reason}") for e in field_errors(exc.errors())],
        ) from None
    return dict(params)


def _problem(key: Any, value: Any) -> str | None:
    if not isinstance(key, str) or len(key) > 256 or not ENV_NAME_RE.match(key):
        return "not a valid environment variable name (letters, digits and _, not starting with a digit)"
    if key.upper().startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX} are the platform's own; choose another name"
    if not isinstance(value, str):
        return f'must be a string, not {type(value).__name__} (quote it: {key}: "{value}")'
    if "\0" in value:
        return "contains a NUL byte, which no program can receive"
    if len(f"{key}={value}".encode()) > MAX_ARG_BYTES:
        return f"is over {MAX_ARG_BYTES} bytes with its name; pass large inputs as files or artifacts"
    return None


def trigger(
    store: Store,
    notifier: Notifier,
    who: Principal,
    project: str,
    name: str,
    params: Any = None,
    key: str | None = None,
) -> Triggered:
    """Fire the job now, even when it is suspended (suspend stops its schedule and dependencies only). A
    repeated request key gives the run the first request made; concurrencyPolicy Forbid with a run still
    active is a Conflict naming that run."""
    job = find_job(store, project, name)
    if job.metadata.deletionTimestamp is not None:
        raise Conflict(f"job {name!r} is being deleted; it fires no more")
    checked = check_params(job, params)
    said = f"triggered by {who.name}" + (f" with {', '.join(sorted(checked))}" if checked else "")
    fire = Fire(
        job, "manual", f"manual:{key or uuid.uuid4()}", params=checked, events=[(Reason.TRIGGERED, said)]
    )
    result = store.fire_job(fire)
    notifier.touch(job.uid)
    for uid in result.replaced:  # concurrencyPolicy Replace asked them to stop: the controller does it now
        notifier.touch(uid)
    if result.outcome == "Created" and result.run is not None:
        notifier.touch(result.run.uid)
        return Triggered(result.run, created=True)
    if result.outcome == "Duplicate" and result.run is not None:
        return Triggered(result.run, created=False)
    if result.outcome == "Duplicate":  # refused the first time (so now), or its run was removed since
        raise Conflict(f"job {name!r}: this request key was used before: {result.message}")
    raise Conflict(_refusal(store, job, result.message))


def _refusal(store: Store, job: Job, message: str) -> str:
    """Why the fire made no run, and for a Forbid refusal what the user can do about it."""
    if job.spec.concurrencyPolicy != "Forbid" or "still active" not in message:
        return f"job {job.metadata.name!r} not triggered: {message}"
    m = job.metadata
    runs = store.list(Run, m.project, owner_uid=job.uid, unfinished=True, deleting=False)
    active = [r.metadata.name for r in runs]
    stop = f"`runyard stop {active[0]}`" if len(active) == 1 else "`runyard stop RUN`"
    return (
        f"job {job.metadata.name!r} not triggered: {message.removeprefix('skipped: ')}. Wait for it to "
        f"finish, stop it ({stop}), or set spec.concurrencyPolicy to Allow (run both) or Replace (stop it "
        "and start the new one)"
    )


def history(store: Store, project: str, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The job's fires, newest first: trigger, instants, outcome, the run and its phase (None: removed)."""
    return store.job_fires(find_job(store, project, name).uid, limit)


def schedule(store: Store, project: str, name: str, count: int = 5, at: datetime | None = None) -> dict:
    """The job's next fire times (see next_fires_of), with the last fire claimed from its state row."""
    job = find_job(store, project, name)
    state = store.job_state(job.uid) if job.spec.schedule else None
    return next_fires_of(job, state.last_schedule_at if state else None, count, at)


def next_fires_of(job: Job, claimed: datetime | None, count: int = 5, at: datetime | None = None) -> dict:
    """The next `count` instants the job's schedule fires at, in UTC and in the job's zone, counted from
    the latest of now (`at`), status.scheduleFrom (when it was made, changed or resumed) and `claimed`, the
    last fire claimed (kept in the store's job state, or on a cluster in status.lastScheduleTime); none,
    with the reason, when it is suspended or has no schedule."""
    spec, name = job.spec, job.metadata.name
    doc: dict[str, Any] = {
        "job": name,
        "schedule": spec.schedule,
        "timeZone": spec.timeZone,
        "suspended": spec.suspend,
        "fires": [],
        "reason": None,
    }
    if spec.schedule is None:
        after = f"after {', '.join(spec.dependsOn)} succeed" if spec.dependsOn else "when triggered by hand"
        doc["reason"] = f"job {name!r} has no schedule: it runs {after}"
        return doc
    if spec.suspend:
        doc["reason"] = f"job {name!r} is suspended: `runyard jobs resume {name}` schedules it again"
        return doc
    marks = [at or now(), job.status.scheduleFrom, claimed]
    start = max(m for m in marks if m is not None)
    tz = zone(spec.timeZone)
    doc["from"] = start
    doc["fires"] = [
        {"utc": f, "local": f.astimezone(tz)} for f in next_fires(spec.schedule, spec.timeZone, start, count)
    ]
    return doc
