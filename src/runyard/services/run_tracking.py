"""runyard's own tracking use cases, over the Tracking service: the SDK's write path (a batch of up to
10,000 metrics, all or nothing), opening and ending tracking-only runs, and the shapes the CLI reads."""

from __future__ import annotations

import json
import time
from typing import Any

from runyard.core.errors import Conflict, FieldError, Invalid, NotFound
from runyard.core.resources import Run, check_name
from runyard.services.tracking import Tracking
from runyard.store import RunRef, Store

MAX_METRICS = 10_000  # per write: a tenth of a second of a fast loop's points, about 1 MB of JSON
END_STATUSES = ("FINISHED", "FAILED", "KILLED")
JSON_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
BODY_KEYS = {"metrics", "params", "tags"}


def _bad(field: str, reason: str) -> Invalid:
    return Invalid("invalid tracking data", [FieldError(field, reason)])


def _ms() -> int:
    return time.time_ns() // 1_000_000


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
    stamp = _ms()
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
    tracking.update_run(ref, status=status, end_time=_ms())
    return run_document(store, ref)


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


def history_json(tracking: Tracking, ref: RunRef, key: str, limit: int | None, token: str | None) -> str:
    """{key, history: [{value, step, timestamp}], nextPageToken?} as JSON, formatted directly: a
    100,000-point history is a chart's everyday read, and dicts through json.dumps cost twice as much."""
    points, next_token = tracking.metric_history(ref, key, max_results=limit, page_token=token)
    body = ",".join(
        f'{{"value":{_number(p["value"])},"step":{p["step"]},"timestamp":{p["timestamp"]}}}' for p in points
    )
    tail = f',"nextPageToken":{json.dumps(next_token)}' if next_token else ""
    return f'{{"key":{json.dumps(key)},"history":[{body}]{tail}}}'


def _number(value: float) -> str:
    text = repr(value)
    return JSON_SPECIAL[text] if text[-1] in "nf" else text  # nan, inf, -inf as Python's json writes them


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
    runs = [_listed(tracking, store, r, names) for r in found]
    return {"runs": runs, "nextPageToken": next_token}


PHASE_OF_STATUS = {"RUNNING": "Running", "FINISHED": "Succeeded", "FAILED": "Failed", "KILLED": "Cancelled"}


def _listed(tracking: Tracking, store: Store, run: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    info, data = run["info"], run["data"]
    ref = tracking.run(info["run_id"])
    phase = PHASE_OF_STATUS.get(info["status"])
    if phase is None:  # SCHEDULED: Pending, Queued or Starting, which only the Run says
        phase = store.get(Run, ref.project, ref.name).status.phase.value
    return {
        "name": ref.name,
        "runId": ref.run_id,
        "phase": phase,
        "status": info["status"],
        "experiment": names.get(str(info["experiment_id"]), str(info["experiment_id"])),
        "startTime": info.get("start_time"),
        "endTime": info.get("end_time"),
        "params": {p["key"]: p["value"] for p in data.get("params", [])},
        "metrics": {m["key"]: m["value"] for m in data.get("metrics", [])},
        "tags": {t["key"]: t["value"] for t in data.get("tags", [])},
    }
