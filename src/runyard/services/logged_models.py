"""MLflow 3 logged models: a model's record (name, status, params, tags) beside its files, which live in
the artifact store under its experiment, `{experiment artifact_location}/models/{model_id}/artifacts`.

Dicts are in MLflow's JSON shape. Callers authorize: a model belongs to its experiment's project.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
from collections.abc import Iterable
from typing import Any

from runyard.core.errors import FieldError, Invalid, NotFound
from runyard.services import model_filter
from runyard.services.tracking import RunRef, Tracking
from runyard.store import Store
from runyard.store.logged_models import LoggedModelStore
from runyard.store.tables import LoggedModelMetricRow, LoggedModelRow
from runyard.store.tracking import ms

PENDING, READY, FAILED = "LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"
STATUSES = {1: PENDING, 2: READY, 3: FAILED}
MAX_KEY, MAX_PARAM_VALUE, MAX_TAG_VALUE = 250, 6000, 8000
MAX_RESULTS_DEFAULT, MAX_RESULTS = 100, 1000
MAX_DOUBLE = 1.7976931348623157e308
BAD_NAME_CHARS = ("/", ":", ".", "%", '"', "'")
HISTORY_TAG = "mlflow.log-model.history"  # a run's list of the models logged in it (MLflow 2's record)
ADJECTIVES = ("able", "bold", "brave", "calm", "clever", "eager", "gentle", "keen", "lucid", "merry")
NOUNS = ("badger", "crane", "finch", "heron", "lynx", "otter", "panda", "raven", "seal", "wren")


def _bad(field: str, reason: str) -> Invalid:
    return Invalid(f"invalid {field}", [FieldError(field, reason)])


def _pairs(items: Any, field: str, max_value: int) -> dict[str, str]:
    """[{key, value}] as a dict, each checked against MLflow's limits."""
    if not isinstance(items, list | tuple):
        raise _bad(field, "must be a list of {key, value}")
    out = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"{field}[{i}]", "must be an object {key, value}")
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str) or not key or len(key) > MAX_KEY:
            raise _bad(f"{field}[{i}].key", f"must be a non-empty string of at most {MAX_KEY} characters")
        if not isinstance(value, str) or len(value) > max_value:
            raise _bad(f"{field}[{i}].value", f"must be a string of at most {max_value} characters")
        out[key] = value
    return out


def status_of(value: object) -> str:
    """MLflow's status, given by name or by number."""
    if isinstance(value, int) and value in STATUSES:
        return STATUSES[value]
    if isinstance(value, str) and value in STATUSES.values():
        return value
    raise _bad("status", f"must be one of {sorted(STATUSES.values())}")


def _metric_out(m: LoggedModelMetricRow) -> dict:
    """MLflow's JSON for a metric: NaN as the string protobuf reads, infinities as the largest double."""
    value: float | str = "NaN" if m.value is None else max(-MAX_DOUBLE, min(MAX_DOUBLE, m.value))
    out = {"key": m.key, "value": value, "timestamp": m.timestamp, "step": m.step}
    out |= {"model_id": m.model_id, "run_id": m.run_id}
    if m.dataset_name:
        out |= {"dataset_name": m.dataset_name, "dataset_digest": m.dataset_digest}
    return out


def render(row: LoggedModelRow, metrics: Iterable[LoggedModelMetricRow] = ()) -> dict:
    info: dict = {
        "model_id": row.model_id,
        "experiment_id": str(row.experiment_id),
        "name": row.name,
        "creation_timestamp_ms": row.creation_timestamp_ms,
        "last_updated_timestamp_ms": row.last_updated_timestamp_ms,
        "artifact_uri": row.artifact_location,
        "status": row.status,
        "tags": [{"key": k, "value": v} for k, v in row.tags.items()],
    }
    for field in ("model_type", "source_run_id", "status_message"):
        if getattr(row, field):
            info[field] = getattr(row, field)
    params = [{"key": k, "value": v} for k, v in row.params.items()]
    return {"info": info, "data": {"params": params, "metrics": [_metric_out(m) for m in metrics]}}


class LoggedModels:
    def __init__(self, store: Store, tracking: Tracking):
        self.rows = LoggedModelStore(store)
        self.tracking = tracking

    def create(
        self,
        scope: str,
        experiment_id: str,
        name: str | None = None,
        model_type: str | None = None,
        source_run_id: str | None = None,
        params: Any = (),
        tags: Any = (),
    ) -> dict:
        """A new PENDING model in an active experiment; its files go under its artifact_uri."""
        if name is not None and (not isinstance(name, str) or not name or set(name) & set(BAD_NAME_CHARS)):
            raise _bad("name", f"must be a non-empty string without any of {' '.join(BAD_NAME_CHARS)}")
        if model_type is not None and (not isinstance(model_type, str) or len(model_type) > 500):
            raise _bad("model_type", "must be a string of at most 500 characters")
        if source_run_id is not None and not isinstance(source_run_id, str):
            raise _bad("source_run_id", "must be a run id")
        experiment = self.tracking.get_experiment(scope, experiment_id)
        if experiment["lifecycle_stage"] != "active":
            raise _bad("experiment_id", f"experiment {experiment_id} is deleted")
        project = self.tracking.experiment_project(experiment["experiment_id"], scope)
        run_id = None
        if source_run_id:
            run = self.tracking.run(source_run_id)
            if run.project != project:
                raise _bad("source_run_id", f"run {source_run_id} is not in project {project!r}")
            run_id = run.run_id
        model_id = "m-" + secrets.token_hex(16)
        now = ms()
        row = LoggedModelRow(
            model_id=model_id,
            project=project,
            experiment_id=int(experiment["experiment_id"]),
            name=name or f"{secrets.choice(ADJECTIVES)}-{secrets.choice(NOUNS)}-{secrets.randbelow(1000)}",
            artifact_location=f"{experiment['artifact_location'].rstrip('/')}/models/{model_id}/artifacts",
            creation_timestamp_ms=now,
            last_updated_timestamp_ms=now,
            status=PENDING,
            status_message=None,
            model_type=model_type or None,
            source_run_id=run_id,
            lifecycle_stage="active",
            params=_pairs(params, "params", MAX_PARAM_VALUE),
            tags=_pairs(tags, "tags", MAX_TAG_VALUE),
        )
        return render(self.rows.add(row))

    def render(self, row: LoggedModelRow) -> dict:
        return render(row, self.rows.metrics([row.model_id]).get(row.model_id, ()))

    def row(self, model_id: str, allow_deleted: bool = False) -> LoggedModelRow:
        row = self.rows.get(model_id)
        if row is None or (row.lifecycle_stage == "deleted" and not allow_deleted):
            raise NotFound(f"no logged model with id {model_id!r}")
        return row

    def _change(self, model_id: str, edit) -> dict:
        def stamped(row: LoggedModelRow) -> None:
            edit(row)
            row.last_updated_timestamp_ms = ms()

        self.row(model_id)
        row = self.rows.change(model_id, stamped)
        if row is None:
            raise NotFound(f"no logged model with id {model_id!r}")
        return self.render(row)

    def log_params(self, model_id: str, params: Any) -> None:
        new = _pairs(params, "params", MAX_PARAM_VALUE)
        self._change(model_id, lambda row: setattr(row, "params", {**row.params, **new}))

    def finalize(self, model_id: str, status: object) -> dict:
        final = status_of(status)
        return self._change(model_id, lambda row: setattr(row, "status", final))

    def set_tags(self, model_id: str, tags: Any) -> None:
        new = _pairs(tags, "tags", MAX_TAG_VALUE)
        self._change(model_id, lambda row: setattr(row, "tags", {**row.tags, **new}))

    def delete_tag(self, model_id: str, key: str) -> None:
        if key not in self.row(model_id).tags:
            raise NotFound(f"logged model {model_id!r} has no tag {key!r}")

        def drop(row: LoggedModelRow) -> None:
            row.tags = {k: v for k, v in row.tags.items() if k != key}

        self._change(model_id, drop)

    def delete(self, model_id: str) -> None:
        self._change(model_id, lambda row: setattr(row, "lifecycle_stage", "deleted"))

    def search(
        self,
        experiments: Iterable[int],
        filter: str | None = None,
        datasets: Any = (),
        max_results: Any = None,
        order_by: Any = (),
        page_token: Any = None,
    ) -> tuple[list[dict], str | None]:
        """The active models of these experiments that match `filter`, a page at a time; metrics are
        those on `datasets` ({dataset_name, dataset_digest?}) when given."""
        if filter is not None and not isinstance(filter, str):
            raise _bad("filter", "must be a string")
        clauses = model_filter.parse_filter(filter)
        limit = max_results or MAX_RESULTS_DEFAULT
        if not isinstance(limit, int) or not 0 < limit <= MAX_RESULTS:
            raise _bad("max_results", f"must be between 1 and {MAX_RESULTS}")
        datasets, order_by = _objects(datasets, "datasets"), _objects(order_by, "order_by")
        if any(not d.get("dataset_name") for d in datasets):
            raise _bad("datasets", "each needs a dataset_name")
        start = _offset(page_token)
        rows = [r for r in self.rows.in_experiments(experiments) if r.lifecycle_stage == "active"]
        metrics = self.rows.metrics(r.model_id for r in rows)
        fields = {r.model_id: _fields(r, metrics.get(r.model_id, ()), datasets) for r in rows}
        found = [r for r in rows if model_filter.matches(fields[r.model_id], clauses)]
        for ob in reversed(order_by):  # stable sorts, the last key first
            kind, key = model_filter.sort_key(str(ob.get("field_name", "")))
            on = [ob] if ob.get("dataset_name") else datasets
            values: dict[str, Any] = {
                r.model_id: fields[r.model_id][key]
                if kind == "attribute"
                else _metric_values(metrics.get(r.model_id, ()), on).get(key)
                for r in found
            }
            present = sorted(
                (r for r in found if values[r.model_id] is not None),
                key=lambda r: values[r.model_id],
                reverse=not ob.get("ascending", True),
            )
            found = present + [r for r in found if values[r.model_id] is None]  # missing ones last
        page = found[start : start + limit]
        token = _token(start + limit) if start + limit < len(found) else None
        return [render(r, metrics.get(r.model_id, ())) for r in page], token

    def link_metrics(self, ref: RunRef, metrics: Iterable[dict]) -> None:
        """Metrics logged to a run with a model_id (MLflow 3) count for that model too: its latest value
        of each. Call after the run's own write; metrics without a model_id are skipped."""
        rows = []
        for m in metrics:
            if not m.get("model_id"):
                continue
            model = self.row(str(m["model_id"]))
            if model.project != ref.project:
                raise _bad("model_id", f"model {model.model_id} is not in project {ref.project!r}")
            value = float(m["value"])
            rows.append(
                {
                    "model_id": model.model_id,
                    "key": m["key"],
                    "dataset_name": m.get("dataset_name") or "",
                    "dataset_digest": m.get("dataset_digest") or "",
                    "value": None if math.isnan(value) else value,
                    "step": int(m.get("step") or 0),
                    "timestamp": int(m["timestamp"]),
                    "run_id": ref.run_id,
                }
            )
        self.rows.link_metrics(rows)

    def log_outputs(self, ref: RunRef, models: Any) -> None:
        """Record the models a run produced; each must exist."""
        outputs = []
        for i, m in enumerate(_objects(models, "models")):
            model_id, step = m.get("model_id"), m.get("step", 0)
            if not isinstance(model_id, str) or not re.fullmatch(r"-?\d{1,19}", str(step)):
                raise _bad(f"models[{i}]", "needs a model_id and an integer step")
            self.row(model_id)
            outputs.append((model_id, int(step)))
        self.rows.add_outputs(ref.run_id, outputs)

    def outputs(self, ref: RunRef) -> list[dict]:
        """MLflow's run outputs: [{model_id, step}]."""
        return [{"model_id": m, "step": step} for m, step in self.rows.outputs(ref.run_id)]

    def record_in_run(self, ref: RunRef, model_json: str) -> None:
        """Append a saved model's description to the run's history tag, as MLflow's log-model does."""
        try:
            model = json.loads(model_json)
        except ValueError:
            raise _bad("model_json", "is not valid JSON") from None
        missing = {"artifact_path", "flavors", "utc_time_created", "run_id"} - set(model)
        if missing:
            raise _bad("model_json", f"lacks {sorted(missing)}")
        tags = {t["key"]: t["value"] for t in self.tracking.get_run(ref)["data"]["tags"]}
        history = json.loads(tags.get(HISTORY_TAG, "[]"))
        self.tracking.set_tag(ref, HISTORY_TAG, json.dumps([*history, model]))


def _objects(items: Any, field: str) -> list[dict]:
    if not isinstance(items, list | tuple) or not all(isinstance(i, dict) for i in items):
        raise _bad(field, "must be a list of objects")
    return list(items)


def _fields(row: LoggedModelRow, metrics: Iterable[LoggedModelMetricRow], datasets: list[dict]) -> dict:
    fields = {k: getattr(row, k) for k in model_filter.TEXT_ATTRIBUTES | model_filter.NUMBER_ATTRIBUTES}
    fields["status"] = row.status.removeprefix("LOGGED_MODEL_")  # READY, as the client names it
    return {**fields, "params": row.params, "tags": row.tags, "metrics": _metric_values(metrics, datasets)}


def _metric_values(metrics: Iterable[LoggedModelMetricRow], datasets: list[dict]) -> dict[str, float]:
    """{key: value} of the metrics on one of `datasets` (any, when none are given); NaN left out."""
    out: dict[str, float] = {}
    for m in metrics:
        on = not datasets or any(
            d["dataset_name"] == m.dataset_name and d.get("dataset_digest") in (None, "", m.dataset_digest)
            for d in datasets
        )
        if on and m.value is not None:
            out.setdefault(m.key, m.value)
    return out


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    if not isinstance(token, str):
        raise _bad("page_token", "is not a token this search returned")
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _bad("page_token", "is not a token this search returned") from None
    if not isinstance(offset, int) or offset < 0:
        raise _bad("page_token", "is not a token this search returned")
    return offset
