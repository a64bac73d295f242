"""runyard's own tracking use cases, over the Tracking service: the SDK's write path (a batch of up to
10,000 metrics, all or nothing), opening and ending tracking-only runs, the shapes the CLI reads, and
the few MLflow writes the service leaves to its callers (an experiment tag's removal, update-run's
respect of a stop)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import delete, select

from runyard.core.errors import Conflict, FieldError, Invalid, NotFound
from runyard.core.phases import Phase
from runyard.core.resources import Run, check_name
from runyard.services.tracking import Tracking
from runyard.store import RunRef, Store
from runyard.store.tracking import ACTIVE, EXPERIMENT_TAGS, RESOURCES, ms, run_hex

MAX_METRICS = 10_000  # per write: a tenth of a second of a fast loop's points, about 1 MB of JSON
END_STATUSES = ("FINISHED", "FAILED", "KILLED")
BODY_KEYS = {"metrics", "params", "tags"}
NEXT_TOKEN = b',"next_page_token":'


def _bad(field: str, reason: str) -> Invalid:
    return Invalid("invalid tracking data", [FieldError(field, reason)])


def _pairs(body: dict, name: str) -> list[dict[str, str]]:
    given = body.get(name) or {}
    if not isinstance(given, dict):
        raise _bad(name, "must be an object of key: value")
    pairs = []
    for key, value in given.items():
        if value is None or isinstance(value, dict | list):
            raise _bad(f"{name}.{key}", "must be a string or a number")
        pairs.append({"key": key, "value": value if isinstance(value, str) else str(value)})
    return pairs


def log_data(tracking: Tracking, ref: RunRef, body: Any) -> None:
    """Validate a write as a whole, then store it in one transaction: a refused write stores nothing."""
    if not isinstance(body, dict):
        raise _bad("(body)", "must be an object {metrics, params, tags}")
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        raise _bad(unknown[0], "unknown field: metrics, params, tags")
    metrics = body.get("metrics") or []
    if not isinstance(metrics, list):
        raise _bad("metrics", "must be a list")
    stamp = ms()
    for m in metrics:  # a timestamp may go unsaid here, unlike in MLflow's API; log_batch checks the rest
        if isinstance(m, dict) and m.get("timestamp") is None:
            m["timestamp"] = stamp
    params, tags = _pairs(body, "params"), _pairs(body, "tags")
    tracking.log_batch(ref, metrics, params, tags, max_metrics=MAX_METRICS)


def _experiment_id(tracking: Tracking, project: str, name: Any) -> str:
    """The project's experiment of that name, made on first use; the Default one when none is named."""
    if name is None:
        return tracking.default_experiment(project)
    if not isinstance(name, str) or not name.strip():
        raise Invalid("invalid experiment", [FieldError("experiment", "must be a non-empty string")])
    for _ in range(2):
        try:
            return str(tracking.get_experiment_by_name(project, name)["experiment_id"])
        except NotFound:
            try:
                return tracking.create_experiment(project, name)
            except Conflict:  # made meanwhile by another caller: read it again
                continue
    return str(tracking.get_experiment_by_name(project, name)["experiment_id"])


def open_run(tracking: Tracking, store: Store, project: str, body: Any, user: str) -> dict[str, Any]:
    """A tracking-only Run (no process) in `project`: its document, with its MLflow run id."""
    if not isinstance(body, dict):
        raise Invalid("invalid run", [FieldError("(body)", "must be an object {name?, experiment?}")])
    name = body.get("name")
    if name is not None:
        try:
            check_name(name)
        except ValueError as exc:
            raise Invalid("invalid run name", [FieldError("name", str(exc))]) from None
    exp_id = _experiment_id(tracking, project, body.get("experiment"))
    created = tracking.create_run(project, exp_id, run_name=name, user_id=user, name=name)
    ref = tracking.run(created["info"]["run_id"])
    return run_document(store, ref)


def end_run(tracking: Tracking, store: Store, ref: RunRef, body: Any) -> dict[str, Any]:
    """End a run as its client says; for a run with a process this records the end time, never its phase,
    and a run that has ended already (stopped) keeps how it ended."""
    status = body.get("status") if isinstance(body, dict) else None
    if status not in END_STATUSES:
        reason = f"must be one of {', '.join(END_STATUSES)}"
        raise Invalid("invalid status", [FieldError("status", reason)])
    run = store.get(Run, ref.project, ref.name)
    if run.status.phase.is_terminal():  # stopped meanwhile (`runyard stop`): the stop stands
        return _document(run, ref)
    tracking.update_run(ref, status=status, end_time=ms())
    return run_document(store, ref)


def update_run(
    tracking: Tracking,
    store: Store,
    ref: RunRef,
    status: str | None,
    end_time: int | None,
    run_name: str | None,
) -> dict[str, Any]:
    """MLflow's update-run. A tracking-only run stopped by `runyard stop` (Cancelled) stays Cancelled
    with the stop's end time: its client's end_run (or a resume) that comes after changes only its name."""
    if status is not None and ref.tracking_only and _phase(store, ref) == Phase.CANCELLED:
        status, end_time = None, None
    return tracking.update_run(ref, status, end_time, run_name)


def _phase(store: Store, ref: RunRef) -> Phase:
    return store.get(Run, ref.project, ref.name).status.phase


def without_relogged_points(tracking: Tracking, ref: RunRef, metrics: list[Any]) -> list[Any]:
    """MLflow 3's log_model logs the run's metrics again, with the model's id: MLflow keeps one row per
    identical point, so a point already in the run's history is not written twice. Only metrics that carry
    a model_id are checked (a plain batch is hot and never re-logs)."""
    seen: dict[str, set[tuple[float, int, int]]] = {}
    kept = []
    for m in metrics:
        if isinstance(m, dict) and m.get("model_id") and isinstance(m.get("key"), str):
            try:
                point = (float(m["value"]), int(m["timestamp"]), int(m.get("step") or 0))
            except (KeyError, TypeError, ValueError):
                point = None  # malformed: the service refuses it, naming the field
            if point is not None and point[0] == point[0]:  # NaN never equals a stored point
                key = m["key"]
                if key not in seen:
                    seen[key] = {
                        (v, ts, st) for v, ts, st in tracking.store.metric_points(ref, key) if v is not None
                    }
                if point in seen[key]:
                    continue
        kept.append(m)
    return kept


def delete_experiment_tag(tracking: Tracking, scope: str, experiment_id: str, key: str) -> None:
    """MLflow's delete-experiment-tag: the experiment must be active and have the tag."""
    experiment = tracking.get_experiment(scope, experiment_id)
    if experiment["lifecycle_stage"] != ACTIVE:
        reason = "the experiment is deleted"
        raise Invalid("The experiment must be in the 'active' state.", [FieldError("experiment_id", reason)])
    if not any(t["key"] == key for t in experiment["tags"]):
        raise NotFound(f"No tag with name: {key} in experiment with id {experiment_id}")
    tags = EXPERIMENT_TAGS.c
    where = (tags.experiment_id == int(experiment["experiment_id"])) & (tags.key == key)
    with tracking.store.connect(write=True) as conn:
        conn.execute(delete(EXPERIMENT_TAGS).where(where))


def run_document(store: Store, ref: RunRef) -> dict[str, Any]:
    return _document(store.get(Run, ref.project, ref.name), ref)


def _document(run: Run, ref: RunRef) -> dict[str, Any]:
    return {**run.model_dump(mode="json", exclude_none=True), "runId": ref.run_id}


def summary(tracking: Tracking, ref: RunRef) -> dict[str, Any]:
    """A run's tracking data at a glance: params, tags and the latest value of each metric."""
    run = tracking.get_run(ref)
    data = run["data"]
    experiment = tracking.get_experiment(ref.project, ref.experiment_id)
    return {
        "runId": ref.run_id,
        "experiment": {"id": ref.experiment_id, "name": experiment["name"]},
        "status": run["info"]["status"],
        "params": {p["key"]: p["value"] for p in data.get("params", [])},
        "tags": {t["key"]: t["value"] for t in data.get("tags", [])},
        "metrics": {m["key"]: _point(m) for m in data.get("metrics", [])},
    }


def _point(m: dict[str, Any]) -> dict[str, Any]:
    return {"value": m["value"], "step": m["step"], "timestamp": m["timestamp"]}


def history_json(tracking: Tracking, ref: RunRef, key: str, limit: int | None, token: str | None) -> bytes:
    """MLflow's get-history answer with the metric's key: {key, metrics: [{key, value, timestamp, step}],
    nextPageToken?}, NaN as "NaN". Served from the body the MLflow route serves (a whole history is kept
    encoded until a point is added), so a 100,000-point read builds no object per point."""
    body = tracking.metric_history_json(ref, key, limit, token)
    if body.endswith(b'"}'):  # a page with a next one: its token, named as runyard's own answers name it
        at = body.rfind(NEXT_TOKEN)
        body = body[:at] + b',"nextPageToken":' + body[at + len(NEXT_TOKEN) :]
    return b'{"key":' + json.dumps(key).encode() + b"," + body[1:]


def search(
    tracking: Tracking,
    store: Store,
    project: str,
    experiment: str | None,
    filter: str | None,
    order_by: list[str],
    limit: int,
    token: str | None,
) -> dict[str, Any]:
    """The project's runs (or one experiment's), filtered and sorted in MLflow's syntax."""
    experiments, _ = tracking.search_experiments(project, view_type="ALL", max_results=1000)
    names = {str(e["experiment_id"]): e["name"] for e in experiments}
    if experiment is not None:
        ids = [i for i, n in names.items() if n == experiment]
        if not ids:
            raise NotFound(f"no experiment named {experiment!r} in project {project!r}")
    else:
        ids = list(names)
    found, next_token = tracking.search_runs(
        project, ids, filter=filter, max_results=limit, order_by=order_by, page_token=token
    )
    resources = _names_and_phases(store, [str(uuid.UUID(r["info"]["run_id"])) for r in found])
    found = [r for r in found if r["info"]["run_id"] in resources]  # those not deleted meanwhile
    runs = [_listed(r, resources, names) for r in found]
    return {"runs": runs, "nextPageToken": next_token}


def _names_and_phases(store: Store, uids: list[str]) -> dict[str, tuple[str, str]]:
    """{uid (hex): (name, phase)} of these Runs, in a query per 500 rather than a lookup per run."""
    out: dict[str, tuple[str, str]] = {}
    columns = (RESOURCES.c.uid, RESOURCES.c.name, RESOURCES.c.phase)
    with store.connect() as conn:
        for i in range(0, len(uids), 500):
            rows = conn.execute(select(*columns).where(RESOURCES.c.uid.in_(uids[i : i + 500])))
            out |= {run_hex(uid): (name, phase) for uid, name, phase in rows}
    return out


def _listed(run: dict[str, Any], resources: dict[str, tuple[str, str]], names: dict) -> dict[str, Any]:
    info, data = run["info"], run["data"]
    name, phase = resources[info["run_id"]]
    return {
        "name": name,
        "runId": info["run_id"],
        "phase": phase,
        "status": info["status"],
        "experiment": names.get(str(info["experiment_id"]), str(info["experiment_id"])),
        "startTime": info.get("start_time"),
        "endTime": info.get("end_time"),
        "params": {p["key"]: p["value"] for p in data.get("params", [])},
        "metrics": {m["key"]: m["value"] for m in data.get("metrics", [])},
        "tags": {t["key"]: t["value"] for t in data.get("tags", [])},
    }
