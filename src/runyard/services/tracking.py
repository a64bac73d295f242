"""Experiment tracking: MLflow experiments, runs' metrics, params, tags and inputs, with MLflow's rules.

Every Run resource is also a tracked run (its MLflow run id is its uid without dashes); this service
validates as MLflow does, shapes results as MLflow's JSON, and leaves the SQL to the store
(store/tracking.py). Errors are core errors: Invalid, NotFound, Conflict.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from runyard.core.clock import now
from runyard.core.errors import Conflict, NotFound
from runyard.core.kinds import name_problem
from runyard.core.phases import Phase
from runyard.core.resources import ObjectMeta, Run, RunSpec, RunStatus
from runyard.services.artifacts import SCHEME, locate
from runyard.services.tracking_rules import (
    MAX_DATASET_DIGEST,
    MAX_DATASET_NAME,
    MAX_DATASET_SOURCE,
    MAX_ENTITIES_PER_BATCH,
    MAX_ENTITY_KEY_LENGTH,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_EXPERIMENT_TAG_VAL_LENGTH,
    MAX_HISTORY_PAGE,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
    check_key,
    check_metric,
    check_points,
    int64_field,
    invalid,
    key_values,
    offset_of,
    page_size,
    stages_of,
    text_field,
    token_for,
)
from runyard.store import RunInit, RunRef, Store
from runyard.store.tracking import (
    ACTIVE,
    DELETED,
    EXPERIMENT_ANNOTATION,
    EXPERIMENTS,
    RUN_NAME_TAG,
    RUNS,
    run_hex,
)
from runyard.store.tracking_points import point
from runyard.store.tracking_search import OrderKey, parse_experiment_filter, parse_filter, parse_order_by

__all__ = ["RunRef", "Tracking"]

HISTORY_CACHE_BYTES = 128 << 20
END_PHASES = {"FINISHED": Phase.SUCCEEDED, "FAILED": Phase.FAILED, "KILLED": Phase.CANCELLED}
RUN_STATUSES = {"RUNNING", "SCHEDULED", *END_PHASES}


def _metric_out(r: Any) -> dict[str, Any]:
    value = math.nan if r.is_nan else r.value
    return {"key": r.key, "value": value, "timestamp": r.timestamp, "step": r.step}


def _experiment_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "experiment_id": str(r["id"]),
        "name": r["name"],
        "artifact_location": r["artifact_location"],
        "lifecycle_stage": r["lifecycle_stage"],
        "creation_time": r["creation_time"],
        "last_update_time": r["last_update_time"],
        "tags": r["tags"],
    }


def _info_out(r: dict[str, Any]) -> dict[str, Any]:
    hex_id = run_hex(r["uid"])
    info = {
        "run_id": hex_id,
        "run_uuid": hex_id,
        "run_name": r["run_name"],
        "experiment_id": str(r["experiment_id"]),
        "user_id": r["user_id"],
        "status": r["status"],
        "start_time": r["start_time"],
        "artifact_uri": r["artifact_uri"],
        "lifecycle_stage": r["lifecycle_stage"],
    }
    if r["end_time"] is not None:
        info["end_time"] = r["end_time"]
    return info


def _run_out(info: dict[str, Any], data: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    tags = data["tags"]
    if not any(t["key"] == RUN_NAME_TAG for t in tags):
        tags.append({"key": RUN_NAME_TAG, "value": info["run_name"]})
    return {
        "info": _info_out(info),
        "data": {"metrics": data["metrics"], "params": data["params"], "tags": tags},
        "inputs": {"dataset_inputs": data["inputs"]},
    }


def _resource_name(run_name: str | None) -> str | None:
    """The Run's name from MLflow's run name: itself when it is a valid name, else None."""
    if run_name and name_problem(run_name) is None:
        return run_name
    return None


def _generated_name(run_name: str | None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (run_name or "").lower()).strip("-")[:48].strip("-")
    return f"{slug or 'run'}-{secrets.token_hex(3)}"


class EncodedHistories:
    """Whole metric histories as encoded responses, by (run key, metric key), with the count of points
    each was read at; least recently used first out past `budget` bytes. A run's key is never reused,
    so a deleted run's entries just age out."""

    def __init__(self, budget: int):
        self.budget, self.size = budget, 0
        self.entries: OrderedDict[tuple[int, str], tuple[int, bytes]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, pk: int, key: str, count: int) -> bytes | None:
        with self.lock:
            got = self.entries.get((pk, key))
            if got is None or got[0] != count:
                return None
            self.entries.move_to_end((pk, key))
            return got[1]

    def put(self, pk: int, key: str, count: int, body: bytes) -> None:
        if len(body) > self.budget // 4:
            return
        with self.lock:
            old = self.entries.pop((pk, key), None)
            if old is not None:
                self.size -= len(old[1])
            self.entries[(pk, key)] = (count, body)
            self.size += len(body)
            while self.size > self.budget:
                _, (_, dropped) = self.entries.popitem(last=False)
                self.size -= len(dropped)


class Tracking:
    def __init__(self, store: Store):
        self.store = store
        self._experiment_projects: dict[str, str] = {}  # experiments never move between projects
        self._histories = EncodedHistories(HISTORY_CACHE_BYTES)

    # ---- runs by id

    def run(self, run_id: str) -> RunRef:
        ref = self.store.tracked_run(run_id) if isinstance(run_id, str) else None
        if ref is None:
            raise NotFound(f"Run with id={run_id} not found")
        return ref

    def run_by_name(self, project: str, name: str) -> RunRef:
        ref = self.store.tracked_run_by_name(project, name)
        if ref is None:
            raise NotFound(f"Run {name!r} not found in project {project!r}")
        return ref

    # ---- experiments

    def _exp_id(self, experiment_id: Any, field: str = "experiment_id") -> int:
        text = (
            str(experiment_id)
            if isinstance(experiment_id, int) and not isinstance(experiment_id, bool)
            else experiment_id
        )
        if not isinstance(text, str) or not re.fullmatch(r"\d{1,18}", text):
            raise invalid(
                field,
                f"{experiment_id!r}: an experiment id is an integer",
                f"Invalid experiment ID: '{experiment_id}'",
            )
        return int(text)

    def experiment_project(self, experiment_id: str, scope: str) -> str:
        """The project an experiment belongs to ("0" is the scope project's Default)."""
        if str(experiment_id) == "0":
            return scope
        key = str(experiment_id)
        if (known := self._experiment_projects.get(key)) is not None:
            return known
        rows = self.store.experiment_rows(EXPERIMENTS.c.id == self._exp_id(experiment_id))
        if not rows:
            raise NotFound(f"No Experiment with id={experiment_id} exists")
        self._experiment_projects[key] = rows[0]["project"]
        return rows[0]["project"]

    def default_experiment(self, project: str) -> str:
        return str(self.store.default_experiment_id(project))

    def _resolve(self, scope: str, experiment_id: Any) -> int:
        if str(experiment_id) == "0":
            return self.store.default_experiment_id(scope)
        return self._exp_id(experiment_id)

    def _experiment(self, scope: str, experiment_id: Any) -> dict[str, Any]:
        exp_id = self._resolve(scope, experiment_id)
        rows = self.store.experiment_rows(EXPERIMENTS.c.id == exp_id)
        if not rows:
            raise NotFound(f"No Experiment with id={experiment_id} exists")
        return rows[0]

    def create_experiment(
        self, project: str, name: str, artifact_location: str | None = None, tags: Iterable[Any] = ()
    ) -> str:
        name = self._experiment_name(name)
        pairs = []
        for i, t in enumerate(tags or ()):
            key = check_key(t.get("key") if isinstance(t, dict) else None, f"tags[{i}].key")
            pairs.append((key, text_field(t.get("value"), f"tags[{i}].value", MAX_EXPERIMENT_TAG_VAL_LENGTH)))
        if artifact_location is not None and not isinstance(artifact_location, str):
            raise invalid("artifact_location", "must be a string")
        if artifact_location and artifact_location.startswith(SCHEME):
            where = locate(artifact_location)
            if where is None or where[0] != project:
                raise invalid(
                    "artifact_location", f"an mlflow-artifacts location must be inside project {project!r}"
                )
        self.store.ensure_project(project)
        return str(self.store.add_experiment(project, name, artifact_location or None, pairs))

    @staticmethod
    def _experiment_name(name: Any, field: str = "name") -> str:
        if not isinstance(name, str) or not name:
            raise invalid(field, "an experiment needs a non-empty name", f"Invalid experiment name: '{name}'")
        if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
            raise invalid(field, f"is {len(name)} characters; at most {MAX_EXPERIMENT_NAME_LENGTH}")
        return name

    def get_experiment(self, scope: str, experiment_id: str) -> dict[str, Any]:
        return _experiment_out(self._experiment(scope, experiment_id))

    def get_experiment_by_name(self, project: str, name: str) -> dict[str, Any]:
        rows = self.store.experiment_rows((EXPERIMENTS.c.project == project) & (EXPERIMENTS.c.name == name))
        if not rows:
            raise NotFound(f"Could not find experiment with name '{name}'")
        return _experiment_out(rows[0])

    def search_experiments(
        self,
        project: str,
        view_type: Any = "ACTIVE_ONLY",
        max_results: Any = 1000,
        filter: str | None = None,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        limit = page_size(max_results)
        offset = offset_of(page_token)
        clauses = parse_experiment_filter(filter)
        order = parse_order_by(list(order_by or ()), experiments=True)
        if not order:
            order = [OrderKey("attribute", "creation_time", True)]
        self.store.default_experiment_id(project)  # MLflow always lists its Default experiment
        rows = self.store.search_experiment_rows(
            project, stages_of(view_type), clauses, order, offset, limit + 1
        )
        token = token_for(offset + limit) if len(rows) > limit else None
        return [_experiment_out(r) for r in rows[:limit]], token

    def update_experiment(self, scope: str, experiment_id: str, new_name: str) -> None:
        exp = self._experiment(scope, experiment_id)
        if exp["lifecycle_stage"] != ACTIVE:
            raise invalid(
                "experiment_id", "the experiment is deleted", "Cannot rename a non-active experiment."
            )
        if exp["id"] == self.store.default_experiment_id(exp["project"]):
            # runs created without an experiment go to the one named Default: it keeps that name
            reason = "the Default experiment keeps its name"
            raise invalid("experiment_id", reason, "Cannot rename the default experiment.")
        self.store.change_experiment(exp["id"], name=self._experiment_name(new_name, "new_name"))

    def delete_experiment(self, scope: str, experiment_id: str) -> None:
        exp = self._experiment(scope, experiment_id)
        if exp["id"] == self.store.default_experiment_id(exp["project"]):
            raise invalid(
                "experiment_id",
                "the Default experiment cannot be deleted",
                "Cannot delete the default experiment.",
            )
        self.store.change_experiment(exp["id"], lifecycle_stage=DELETED)

    def restore_experiment(self, scope: str, experiment_id: str) -> None:
        exp = self._experiment(scope, experiment_id)
        self.store.change_experiment(exp["id"], lifecycle_stage=ACTIVE)

    def set_experiment_tag(self, scope: str, experiment_id: str, key: str, value: str) -> None:
        exp = self._experiment(scope, experiment_id)
        if exp["lifecycle_stage"] != ACTIVE:
            raise invalid(
                "experiment_id", "the experiment is deleted", "The experiment must be in the 'active' state."
            )
        key = check_key(key, "key")
        self.store.set_experiment_tag(
            exp["id"], key, text_field(value, "value", MAX_EXPERIMENT_TAG_VAL_LENGTH)
        )

    # ---- runs

    def create_run(
        self,
        project: str,
        experiment_id: str | None,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: Iterable[Any] = (),
        user_id: str = "",
        name: str | None = None,
    ) -> dict[str, Any]:
        """A tracking-only Run resource (phase Running), with its tracking row in the same transaction.
        Its name is `name`, else `run_name` when that is a valid name still free, else generated."""
        pairs = key_values(list(tags or ()), "tags", MAX_TAG_VAL_LENGTH)
        tag_name = dict(pairs).get(RUN_NAME_TAG)
        if run_name and tag_name and run_name != tag_name:
            raise invalid("run_name", f"differs from the {RUN_NAME_TAG} tag ({tag_name!r})")
        run_name = run_name or tag_name
        if run_name is not None:
            run_name = text_field(run_name, "run_name", MAX_ENTITY_KEY_LENGTH)
        start = int64_field(start_time, "start_time", 0) if start_time is not None else None
        exp_id = self._resolve(project, experiment_id if experiment_id not in (None, "") else "0")
        exp = self.store.experiment_rows(EXPERIMENTS.c.id == exp_id)
        if not exp or exp[0]["project"] != project:
            raise NotFound(f"No Experiment with id={experiment_id} exists")
        if exp[0]["lifecycle_stage"] != ACTIVE:
            raise invalid(
                "experiment_id",
                "the experiment is deleted",
                f"The experiment {exp_id} must be in the 'active' state.",
            )
        if name is not None and (problem := name_problem(name)):
            raise invalid("name", problem)
        self.store.ensure_project(project)
        candidates = (
            [name] if name else [n for n in (_resource_name(run_name),) if n] + [_generated_name(run_name)]
        )
        init = RunInit(run_name=run_name, user_id=user_id or "", start_time=start, tags=pairs)
        for i, candidate in enumerate(candidates):
            meta = ObjectMeta(
                name=candidate, project=project, annotations={EXPERIMENT_ANNOTATION: str(exp_id)}
            )
            res = Run(
                metadata=meta,
                spec=RunSpec(trackingOnly=True),
                status=RunStatus(phase=Phase.RUNNING, startedAt=now()),
            )
            events = [("Created", "a tracking-only run (MLflow create-run or runyard.start_run)")]
            try:
                created = self.store.create(res, events=events, tracking=init)
                break
            except Conflict:
                if i == len(candidates) - 1:
                    raise
        return self.get_run(self.run(created.uid))

    def get_run(self, ref: RunRef) -> dict[str, Any]:
        infos = self.store.run_infos(RUNS.c.id == ref.pk)
        if not infos:
            raise NotFound(f"Run with id={ref.run_id} not found")
        return _run_out(infos[0], self.store.run_data([ref.pk])[ref.pk])

    def run_info(self, ref: RunRef) -> dict[str, Any]:
        infos = self.store.run_infos(RUNS.c.id == ref.pk)
        if not infos:
            raise NotFound(f"Run with id={ref.run_id} not found")
        return _info_out(infos[0])

    def update_run(
        self, ref: RunRef, status: str | None = None, end_time: int | None = None, run_name: str | None = None
    ) -> dict[str, Any]:
        """A tracking-only run ends (or resumes) with its status; an executed run's phase is its
        controller's, so for it only the end time and the name change."""
        if status is not None and status not in RUN_STATUSES:
            raise invalid("status", f"{status!r}: use one of {sorted(RUN_STATUSES)}")
        values: dict[str, Any] = {}
        if end_time is not None:
            values["end_time"] = int64_field(end_time, "end_time", 0)
        if run_name:
            values["run_name"] = text_field(run_name, "run_name", MAX_ENTITY_KEY_LENGTH)
        if ref.tracking_only and status in END_PHASES or status == "RUNNING" and ref.tracking_only:
            self._set_phase(ref, status)
            if status == "RUNNING":
                values.setdefault("end_time", None)
        if values:
            self.store.change_tracking_run(ref, **values)
        return self.run_info(ref)

    def end_run(self, ref: RunRef, status: str = "FINISHED") -> None:
        """Ends a tracking-only run (the SDK's end, `runyard stop`): its phase, and its end time now."""
        self.update_run(ref, status=status)

    def _set_phase(self, ref: RunRef, status: str) -> None:
        for _ in range(5):
            res = self.store.get_uid(ref.uid)
            if not isinstance(res, Run):
                raise NotFound(f"Run with id={ref.run_id} not found")
            phase = END_PHASES.get(status, Phase.RUNNING)
            if res.status.phase == phase:
                return
            res.status.phase = phase
            res.status.reason = "Completed" if phase == Phase.SUCCEEDED else None
            res.status.finishedAt = now() if phase != Phase.RUNNING else None
            terminal = phase.is_terminal()
            event = (
                ("Ended", f"ended by its client as {status}") if terminal else ("Resumed", "running again")
            )
            try:
                self.store.update_status(res, events=[event], revoke_run_tokens=terminal)
                return
            except Conflict:
                continue
        raise Conflict(f"Run {ref.name!r} kept changing; try again")

    def delete_run(self, ref: RunRef) -> None:
        self.store.change_tracking_run(ref, lifecycle_stage=DELETED)

    def restore_run(self, ref: RunRef) -> None:
        self.store.change_tracking_run(ref, lifecycle_stage=ACTIVE)

    def search_runs(
        self,
        project: str,
        experiment_ids: Sequence[Any],
        filter: str | None = None,
        view_type: Any = "ACTIVE_ONLY",
        max_results: Any = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        limit = page_size(max_results)
        offset = offset_of(page_token)
        ids = [self._resolve(project, e) for e in experiment_ids or ()]
        clauses = parse_filter(filter)
        order = parse_order_by(list(order_by or ()))
        infos = self.store.search_run_infos(
            project, ids, stages_of(view_type), clauses, order, offset, limit + 1
        )
        token = token_for(offset + limit) if len(infos) > limit else None
        infos = infos[:limit]
        data = self.store.run_data([i["pk"] for i in infos])
        return [_run_out(i, data[i["pk"]]) for i in infos], token

    # ---- data

    def _check_active(self, ref: RunRef) -> None:
        if ref.deleted:
            raise invalid(
                "run_id",
                "the run is deleted",
                f"The run {ref.run_id} must be in the 'active' state. Current state is deleted.",
            )

    def log_batch(
        self,
        ref: RunRef,
        metrics: Sequence[Any] = (),
        params: Any = (),
        tags: Any = (),
        max_metrics: int = MAX_METRICS_PER_BATCH,
    ) -> None:
        """All or nothing: any invalid item refuses the whole batch. `max_metrics`: MLflow's 1000, or
        more for runyard's own write path."""
        metrics, params, tags = metrics or (), params or (), tags or ()
        n_params, n_tags = len(params), len(tags)
        for what, n, limit in (
            ("metrics", len(metrics), max_metrics),
            ("params", n_params, MAX_PARAMS_TAGS_PER_BATCH),
            ("tags", n_tags, MAX_PARAMS_TAGS_PER_BATCH),
        ):
            if n > limit:
                raise invalid(
                    what,
                    f"{n} given; a batch holds at most {limit}",
                    f"A batch logging request can contain at most {limit} {what}. Got {n} {what}. "
                    f"Please split up {what} across multiple requests and try again.",
                )
        total = len(metrics) + n_params + n_tags
        if max_metrics == MAX_METRICS_PER_BATCH and total > MAX_ENTITIES_PER_BATCH:
            raise invalid(
                "metrics",
                f"{total} items given; a batch holds at most {MAX_ENTITIES_PER_BATCH} in all",
                f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, params, "
                f"and tags. Got {total} metrics, params, and tags.",
            )
        self._check_active(ref)
        self.store.log_data(
            ref,
            check_points(metrics),
            key_values(params, "params", MAX_PARAM_VAL_LENGTH),
            key_values(tags, "tags", MAX_TAG_VAL_LENGTH),
        )

    def log_metric(self, ref: RunRef, key: str, value: float, timestamp: int, step: int = 0) -> None:
        self._check_active(ref)
        got = check_metric({"key": key, "value": value, "timestamp": timestamp, "step": step}, "")
        self.store.log_data(ref, [point(*got)])

    def log_param(self, ref: RunRef, key: str, value: str) -> None:
        self._check_active(ref)
        self.store.log_data(
            ref, params=key_values([{"key": key, "value": value}], "params", MAX_PARAM_VAL_LENGTH)
        )

    def set_tag(self, ref: RunRef, key: str, value: str) -> None:
        self._check_active(ref)
        self.store.log_data(ref, tags=key_values([{"key": key, "value": value}], "tags", MAX_TAG_VAL_LENGTH))

    def delete_tag(self, ref: RunRef, key: str) -> None:
        self._check_active(ref)
        if not self.store.delete_run_tag(ref, key):
            raise NotFound(f"No tag with name: {key} in run with id {ref.run_id}")

    def log_inputs(self, ref: RunRef, datasets: list[dict]) -> None:
        self._check_active(ref)
        rows = []
        for i, item in enumerate(datasets or ()):
            path = f"datasets[{i}]"
            ds = item.get("dataset") if isinstance(item, dict) else None
            if not isinstance(ds, dict):
                raise invalid(f"{path}.dataset", "missing: each input names its dataset")
            name = text_field(ds.get("name"), f"{path}.dataset.name", MAX_DATASET_NAME)
            digest = text_field(ds.get("digest"), f"{path}.dataset.digest", MAX_DATASET_DIGEST)
            text_field(ds.get("source_type"), f"{path}.dataset.source_type", MAX_DATASET_NAME)
            text_field(ds.get("source"), f"{path}.dataset.source", MAX_DATASET_SOURCE)
            tags = [
                {"key": k, "value": v}
                for k, v in key_values(item.get("tags"), f"{path}.tags", MAX_TAG_VAL_LENGTH)
            ]
            rows.append((name, digest, ds, tags))
        self.store.add_inputs(ref, rows)

    def metric_history(
        self, ref: RunRef, key: str, max_results: int | None = None, page_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Every point of a metric, by step then timestamp (pages with max_results)."""
        points, token = self._points(ref, key, max_results, page_token)
        nan = math.nan
        return [
            {"key": key, "value": nan if v is None else v, "timestamp": ts, "step": st}
            for v, ts, st in points
        ], token

    def metric_history_json(
        self, ref: RunRef, key: str, max_results: int | None = None, page_token: str | None = None
    ) -> bytes:
        """metric_history as MLflow's response body, encoded here: {"metrics": [...], "next_page_token"?}.
        NaN is "NaN", as MLflow's protobuf JSON writes it. The fast path for a large history: a whole
        history is kept once encoded, and served again while its count of points is unchanged (one
        primary-key read; points are only ever added, in the same transaction as that count)."""
        if max_results is None and not page_token:
            check_key(key, "metric_key")
            return self._histories.get(ref.pk, key, self.store.metric_count(ref, key)) or self._encode_all(
                ref, key
            )
        points, token = self._points(ref, key, max_results, page_token)
        return self._encode(key, points, token)

    def _encode_all(self, ref: RunRef, key: str) -> bytes:
        formatted = self.store.metric_history_text(ref, key)
        if formatted is not None:
            count, items = formatted
            body = f'{{"metrics":[{items}]}}'.encode()
        else:
            points = self.store.metric_points(ref, key)
            count, body = len(points), self._encode(key, points, None)
        self._histories.put(ref.pk, key, count, body)
        return body

    @staticmethod
    def _encode(key: str, points: list[tuple[float | None, int, int]], token: str | None) -> bytes:
        """One %-format a point, mapped in C; a NaN (None) is written None, then replaced in one pass
        (the key is JSON-escaped, so '"value":None' is found nowhere else)."""
        template = '{"key":' + json.dumps(key).replace("%", "%%") + ',"value":%r,"timestamp":%d,"step":%d}'
        body = ",".join(map(template.__mod__, points))
        if '"value":None' in body:
            body = body.replace('"value":None', '"value":"NaN"')
        tail = f',"next_page_token":"{token}"' if token else ""
        return f'{{"metrics":[{body}]{tail}}}'.encode()

    def _points(
        self, ref: RunRef, key: str, max_results: Any, page_token: str | None
    ) -> tuple[list[tuple[float | None, int, int]], str | None]:
        check_key(key, "metric_key")
        offset = offset_of(page_token)
        if max_results is None and not page_token:
            return self.store.metric_points(ref, key), None
        limit = MAX_HISTORY_PAGE if max_results is None else int64_field(max_results, "max_results")
        if not 1 <= limit <= MAX_HISTORY_PAGE:
            raise invalid("max_results", f"{limit} is out of range: between 1 and {MAX_HISTORY_PAGE}")
        points = self.store.metric_points(ref, key, offset, limit + 1)
        token = token_for(offset + limit) if len(points) > limit else None
        return points[:limit], token

    def latest_metrics(self, ref: RunRef) -> list[dict[str, Any]]:
        return [_metric_out(r) for r in self.store.latest_points(ref)]
