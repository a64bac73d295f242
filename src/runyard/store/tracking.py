"""Tracking data: MLflow experiments, the tracking row every Run has, and what runs log (metrics, params,
tags, dataset inputs).

A Run's tracking row is written in the transaction that creates the Run and removed in the one that
deletes it (`_add_tracking_run`, `_remove_tracking_run`, called by store/resources.py). Run lookups by
id are cached: a run's identity never changes, and its lifecycle stage changes only here. How metric
points are written and read fast is store/tracking_points.py.
"""

from __future__ import annotations

import builtins
import logging
import math
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DBSession

from runyard.core.clock import now
from runyard.core.errors import Conflict, FieldError, Invalid
from runyard.core.resources import Resource
from runyard.store.tables import (
    TRACKING_METRICS,
    ResourceRow,
    TrackingExperimentRow,
    TrackingExperimentTagRow,
    TrackingRunRow,
)
from runyard.store.tracking_points import MetricPoints, Point
from runyard.store.tracking_search import (
    INPUTS,
    LATEST,
    PARAMS,
    TAGS,
    Clause,
    OrderKey,
    clause_sql,
    experiment_clause_sql,
)

log = logging.getLogger(__name__)
RESOURCES = cast(Table, ResourceRow.__table__)
EXPERIMENTS = cast(Table, TrackingExperimentRow.__table__)
EXPERIMENT_TAGS = cast(Table, TrackingExperimentTagRow.__table__)
RUNS = cast(Table, TrackingRunRow.__table__)
METRICS = TRACKING_METRICS

DEFAULT_EXPERIMENT = "Default"
EXPERIMENT_ANNOTATION = "runyard.dev/experiment-id"
RUN_NAME_TAG = "mlflow.runName"
ACTIVE, DELETED = "active", "deleted"

# MLflow's status of a run, from its phase (the one place it is kept)
STATUS_OF_PHASE = {
    "Pending": "SCHEDULED",
    "Queued": "SCHEDULED",
    "Starting": "SCHEDULED",
    "Running": "RUNNING",
    "Succeeded": "FINISHED",
    "Failed": "FAILED",
    "Cancelled": "KILLED",
}
STATUS = case(
    *((RESOURCES.c.phase == phase, literal(status)) for phase, status in STATUS_OF_PHASE.items()),
    else_=literal("SCHEDULED"),
).label("status")


@dataclass(frozen=True)
class RunRef:
    """A tracked run as the services address it. `pk` is its tracking row's key; `deleted`: MLflow's
    lifecycle stage (a soft delete)."""

    uid: str
    run_id: str
    project: str
    name: str
    experiment_id: str
    tracking_only: bool
    artifact_uri: str
    pk: int = 0
    deleted: bool = False


@dataclass(frozen=True)
class RunInit:
    """What a creator of a Run may set on its tracking row (MLflow's create-run); the rest is derived."""

    run_name: str | None = None
    user_id: str = ""
    start_time: int | None = None
    tags: Sequence[tuple[str, str]] = ()


def ms(t: Any = None) -> int:
    """Epoch milliseconds, of now or of a datetime."""
    return int((t or now()).timestamp() * 1000)


def run_hex(uid: str) -> str:
    return uid.replace("-", "")


def experiment_location(project: str, experiment_id: int) -> str:
    return f"mlflow-artifacts:/{project}/{experiment_id}"


# Built once: a run's creation runs them for every run, and building them cost more than the SQL.
_LOCATION = select(EXPERIMENTS.c.artifact_location).where(EXPERIMENTS.c.id == bindparam("id"))
_INSERT_RUN = insert(RUNS).returning(RUNS.c.id)


class TrackingStore(MetricPoints):
    def __init__(self, url: str, migrate: bool = True):
        super().__init__(url, migrate)
        self._run_refs: dict[str, RunRef] = {}  # by run hex id
        self._default_experiments: dict[str, int] = {}  # by project
        self._locations: dict[int, str] = {}  # experiment id -> artifact location
        self._runs_added = 0  # PostgreSQL: see _keep_statistics

    # ---- the Run's tracking row: written and removed with the Run (see store/resources.py)

    def _add_tracking_run(self, conn: Connection, uid: str, res: Resource, init: RunInit | None) -> None:
        m = res.metadata
        init = init or RunInit()
        wanted = m.annotations.get(EXPERIMENT_ANNOTATION)
        if wanted is None:
            exp_id = self._ensure_default(conn, m.project)
        else:
            exp_id = self._experiment_for_run(conn, m.project, wanted)
        location = self._locations.get(exp_id)
        if location is None:  # an experiment's artifact location never changes
            location = conn.execute(_LOCATION, {"id": exp_id}).scalar() or experiment_location(
                m.project, exp_id
            )
            self._locations[exp_id] = location
        run_name = init.run_name or m.name
        values = {
            "uid": uid,
            "project": m.project,
            "experiment_id": exp_id,
            "run_name": run_name,
            "user_id": init.user_id,
            "tracking_only": bool(getattr(res.spec, "trackingOnly", False)),
            "start_time": init.start_time if init.start_time is not None else ms(),
            "end_time": None,
            "lifecycle_stage": ACTIVE,
            "artifact_uri": f"{location.rstrip('/')}/{run_hex(uid)}/artifacts",
        }
        pk = conn.execute(_INSERT_RUN, values).scalar_one()
        tags = dict(init.tags)
        tags[RUN_NAME_TAG] = run_name
        conn.execute(insert(TAGS), [{"run_id": pk, "key": k, "value": v} for k, v in tags.items()])
        if not self.is_sqlite:
            self._keep_statistics()

    def _keep_statistics(self) -> None:
        """PostgreSQL plans a search by its statistics of the tables, which autovacuum renews once a
        minute at best, after a tenth of a table changed. Planned on the statistics of the empty tables,
        a search over the first thousand runs took seconds (a scan of all tags for every run); so at 100,
        200, 400, ... runs added by this process, the tracking tables are analyzed, in the background.
        Past a few thousand runs autovacuum's tenth is soon enough."""
        self._runs_added += 1
        n = self._runs_added
        if n in (100, 200, 400, 800, 1600, 3200, 6400):
            threading.Thread(target=self._analyze, name="analyze-tracking", daemon=True).start()

    def _analyze(self) -> None:
        tables = (
            "tracking_runs, tracking_latest_metrics, tracking_params, tracking_tags, tracking_experiments"
        )
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"ANALYZE {tables}")
        except Exception:  # statistics are an optimization, and the store may be closing meanwhile
            log.debug("could not analyze the tracking tables", exc_info=True)

    def _experiment_for_run(self, conn: Connection, project: str, wanted: str) -> int:
        field = f"metadata.annotations[{EXPERIMENT_ANNOTATION}]"
        if wanted == "0":
            return self._ensure_default(conn, project)
        row = None
        if wanted.isdigit() and len(wanted) < 10:
            q = select(EXPERIMENTS.c.project, EXPERIMENTS.c.lifecycle_stage).where(
                EXPERIMENTS.c.id == int(wanted)
            )
            row = conn.execute(q).first()
        if row is None or row.project != project:
            raise Invalid(
                "no such experiment", [FieldError(field, f"no experiment {wanted!r} in {project!r}")]
            )
        if row.lifecycle_stage != ACTIVE:
            raise Invalid("the experiment is deleted", [FieldError(field, f"experiment {wanted} is deleted")])
        return int(wanted)

    def _ensure_default(self, conn: Connection, project: str) -> int:
        """The project's Default experiment, created on first need (concurrent creators agree on one)."""
        if (known := self._default_experiments.get(project)) is not None:
            return known
        q = select(EXPERIMENTS.c.id).where(
            EXPERIMENTS.c.project == project, EXPERIMENTS.c.name == DEFAULT_EXPERIMENT
        )
        found = conn.execute(q).scalar()
        if found is None:
            values = _new_experiment(project, DEFAULT_EXPERIMENT, None)
            dialect_insert = sqlite.insert if self.is_sqlite else postgresql.insert
            conn.execute(dialect_insert(EXPERIMENTS).values(values).on_conflict_do_nothing())
            found = conn.execute(q).scalar_one()
        self._default_experiments[project] = found
        return found

    def _remove_tracking_run(self, db: DBSession | Connection, uid: str) -> None:
        pk = db.execute(select(RUNS.c.id).where(RUNS.c.uid == uid)).scalar()
        self._run_refs.pop(run_hex(uid), None)
        if pk is None:
            return
        for table in (METRICS, LATEST, PARAMS, TAGS, INPUTS):
            db.execute(delete(table).where(table.c.run_id == pk))
        db.execute(delete(RUNS).where(RUNS.c.id == pk))

    def _end_tracking_run(self, conn: Connection, uid: str) -> None:
        """A Run reached a terminal phase: its end time, unless its client gave one."""
        stmt = update(RUNS).where(RUNS.c.uid == uid, RUNS.c.end_time.is_(None)).values(end_time=ms())
        conn.execute(stmt)

    # ---- experiments

    def default_experiment_id(self, project: str) -> int:
        if (known := self._default_experiments.get(project)) is not None:
            return known
        with self.connect(write=True) as conn:
            return self._ensure_default(conn, project)

    def add_experiment(
        self, project: str, name: str, artifact_location: str | None, tags: Iterable[tuple[str, str]]
    ) -> int:
        values = _new_experiment(project, name, artifact_location)
        try:
            with self.connect(write=True) as conn:
                exp_id = conn.execute(
                    insert(EXPERIMENTS).values(values).returning(EXPERIMENTS.c.id)
                ).scalar_one()
                rows = [{"experiment_id": exp_id, "key": k, "value": v} for k, v in dict(tags).items()]
                if rows:
                    conn.execute(insert(EXPERIMENT_TAGS), rows)
        except IntegrityError:
            raise Conflict(f"Experiment '{name}' already exists.") from None
        return exp_id

    def experiment_rows(self, where: Any) -> builtins.list[dict[str, Any]]:
        """Experiments (as dicts with their tags) matching a condition on the experiments table."""
        with self.connect() as conn:
            rows = conn.execute(select(EXPERIMENTS).where(where)).all()
            return self._with_experiment_tags(conn, rows)

    def _with_experiment_tags(
        self, conn: Connection, rows: Sequence[Row[Any]]
    ) -> builtins.list[dict[str, Any]]:
        out = [dict(r._mapping) for r in rows]
        if not out:
            return out
        tags: dict[int, list[dict[str, str]]] = {r["id"]: [] for r in out}
        q = (
            select(EXPERIMENT_TAGS)
            .where(EXPERIMENT_TAGS.c.experiment_id.in_(tags))
            .order_by(EXPERIMENT_TAGS.c.key)
        )
        for t in conn.execute(q):
            tags[t.experiment_id].append({"key": t.key, "value": t.value})
        for r in out:
            r["tags"] = tags[r["id"]]
            r["artifact_location"] = r["artifact_location"] or experiment_location(r["project"], r["id"])
        return out

    def search_experiment_rows(
        self,
        project: str,
        stages: Sequence[str],
        clauses: Sequence[Clause],
        order: Sequence[OrderKey],
        offset: int,
        limit: int,
    ) -> builtins.list[dict[str, Any]]:
        q = select(EXPERIMENTS).where(
            EXPERIMENTS.c.project == project, EXPERIMENTS.c.lifecycle_stage.in_(stages)
        )
        for c in clauses:
            q = q.where(experiment_clause_sql(c, EXPERIMENTS, EXPERIMENT_TAGS, self.is_sqlite))
        columns = {"name": EXPERIMENTS.c.name, "experiment_id": EXPERIMENTS.c.id}
        columns |= {k: EXPERIMENTS.c[k] for k in ("creation_time", "last_update_time")}
        keys = [columns[o.key].desc() if o.descending else columns[o.key].asc() for o in order]
        if not any(o.key == "experiment_id" for o in order):
            keys.append(EXPERIMENTS.c.id.asc())
        with self.connect() as conn:
            rows = conn.execute(q.order_by(*keys).offset(offset).limit(limit)).all()
            return self._with_experiment_tags(conn, rows)

    def change_experiment(self, exp_id: int, **values: Any) -> None:
        """Rename or (soft) delete and restore; a deleted experiment's runs are deleted with it, and
        restored with it."""
        values["last_update_time"] = ms()
        try:
            with self.connect(write=True) as conn:
                conn.execute(update(EXPERIMENTS).where(EXPERIMENTS.c.id == exp_id).values(**values))
                if "lifecycle_stage" in values:
                    runs = update(RUNS).where(RUNS.c.experiment_id == exp_id)
                    conn.execute(runs.values(lifecycle_stage=values["lifecycle_stage"]))
        except IntegrityError:
            raise Conflict(f"Experiment '{values.get('name')}' already exists.") from None
        if "lifecycle_stage" in values:
            self._run_refs.clear()

    def set_experiment_tag(self, exp_id: int, key: str, value: str) -> None:
        with self.connect(write=True) as conn:
            self._upsert(
                conn,
                EXPERIMENT_TAGS,
                [{"experiment_id": exp_id, "key": key, "value": value}],
                ["experiment_id", "key"],
            )

    # ---- runs

    def tracked_run(self, uid: str) -> RunRef | None:
        """A run by its uid (dashed) or MLflow id (hex), cached."""
        hex_id = run_hex(uid).lower()
        if (ref := self._run_refs.get(hex_id)) is not None:
            return ref
        if len(hex_id) != 32:
            return None
        try:
            dashed = str(uuid.UUID(hex_id))
        except ValueError:
            return None
        refs = self._refs(RUNS.c.uid == dashed)
        return refs[0] if refs else None

    def tracked_run_by_name(self, project: str, name: str) -> RunRef | None:
        refs = self._refs(
            (RESOURCES.c.project == project) & (RESOURCES.c.name == name) & (RESOURCES.c.kind == "Run")
        )
        return refs[0] if refs else None

    def _refs(self, where: Any) -> builtins.list[RunRef]:
        q = select(
            RUNS.c.id,
            RUNS.c.uid,
            RUNS.c.project,
            RUNS.c.experiment_id,
            RUNS.c.tracking_only,
            RUNS.c.artifact_uri,
            RUNS.c.lifecycle_stage,
            RESOURCES.c.name,
        ).join(RESOURCES, RESOURCES.c.uid == RUNS.c.uid)
        with self.connect() as conn:
            rows = conn.execute(q.where(where)).all()
        refs = []
        for r in rows:
            ref = RunRef(
                uid=r.uid,
                run_id=run_hex(r.uid),
                project=r.project,
                name=r.name,
                experiment_id=str(r.experiment_id),
                tracking_only=bool(r.tracking_only),
                artifact_uri=r.artifact_uri,
                pk=r.id,
                deleted=r.lifecycle_stage != ACTIVE,
            )
            self._run_refs[ref.run_id] = ref
            refs.append(ref)
        return refs

    def run_infos(self, where: Any) -> builtins.list[dict[str, Any]]:
        q = self._info_select().where(where)
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    @staticmethod
    def _info_select() -> Select:
        return select(
            RUNS.c.id.label("pk"),
            RUNS.c.uid,
            RUNS.c.project,
            RUNS.c.experiment_id,
            RUNS.c.run_name,
            RUNS.c.user_id,
            RUNS.c.tracking_only,
            RUNS.c.start_time,
            RUNS.c.end_time,
            RUNS.c.lifecycle_stage,
            RUNS.c.artifact_uri,
            RESOURCES.c.name,
            RESOURCES.c.phase,
            STATUS,
        ).join(RESOURCES, RESOURCES.c.uid == RUNS.c.uid)

    def run_data(self, pks: Sequence[int]) -> dict[int, dict[str, list[dict[str, Any]]]]:
        """Latest metrics, params, tags and dataset inputs of each run, in MLflow's shape, by key. Read
        through the driver: a search returns up to thousands of runs with tens of values each."""
        out: dict[int, dict[str, list[dict[str, Any]]]] = {
            pk: {"metrics": [], "params": [], "tags": [], "inputs": []} for pk in pks
        }
        nan = math.nan
        with self.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                for chunk in _chunks(list(out), 500):
                    ids = ",".join(str(int(pk)) for pk in chunk)  # our own integer keys
                    cursor.execute(
                        'SELECT run_id, key, value, "timestamp", step, is_nan FROM tracking_latest_metrics '
                        f"WHERE run_id IN ({ids}) ORDER BY run_id, key"
                    )
                    for run_id, key, value, ts, step, is_nan in cursor.fetchall():
                        metric = {
                            "key": key,
                            "value": nan if is_nan else value,
                            "timestamp": ts,
                            "step": step,
                        }
                        out[run_id]["metrics"].append(metric)
                    for table, name in (("tracking_params", "params"), ("tracking_tags", "tags")):
                        where = f"WHERE run_id IN ({ids}) ORDER BY run_id, key"
                        cursor.execute(f"SELECT run_id, key, value FROM {table} {where}")
                        for run_id, key, value in cursor.fetchall():
                            out[run_id][name].append({"key": key, "value": value})
            finally:
                cursor.close()
            for chunk in _chunks(list(out), 500):
                for r in conn.execute(select(INPUTS).where(INPUTS.c.run_id.in_(chunk))):
                    out[r.run_id]["inputs"].append({"tags": r.tags, "dataset": r.dataset})
        return out

    def search_run_infos(
        self,
        project: str,
        experiment_ids: Sequence[int],
        stages: Sequence[str],
        clauses: Sequence[Clause],
        order: Sequence[OrderKey],
        offset: int,
        limit: int,
    ) -> builtins.list[dict[str, Any]]:
        """One page of runs, filtered and sorted in SQL."""
        q = self._info_select().where(
            RUNS.c.project == project,
            RUNS.c.experiment_id.in_(experiment_ids),
            RUNS.c.lifecycle_stage.in_(stages),
        )
        for c in clauses:
            q = q.where(clause_sql(c, self._search_columns(), self.is_sqlite))
        keys: list[Any] = []
        for i, o in enumerate(order):
            col: Any
            if o.kind == "attribute":
                col = self._search_columns()[o.key]
            else:
                table = {"metric": LATEST, "param": PARAMS, "tag": TAGS}[o.kind]
                alias = table.alias(f"o{i}")
                q = q.outerjoin(alias, and_(alias.c.run_id == RUNS.c.id, alias.c.key == o.key))
                col = alias.c.value
            keys.append(col.is_(None))  # missing values last, either way
            keys.append(col.desc() if o.descending else col.asc())
        if not any(o.kind == "attribute" and o.key == "start_time" for o in order):
            keys.append(RUNS.c.start_time.desc())
        keys.append(RUNS.c.uid.asc())
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(*keys).offset(offset).limit(limit))]

    @staticmethod
    def _search_columns() -> dict[str, Any]:
        return {
            "run_id": func.replace(RUNS.c.uid, "-", ""),
            "run_name": RUNS.c.run_name,
            "status": STATUS.element,
            "user_id": RUNS.c.user_id,
            "artifact_uri": RUNS.c.artifact_uri,
            "start_time": RUNS.c.start_time,
            "end_time": RUNS.c.end_time,
            "experiment_id": RUNS.c.experiment_id,
            "lifecycle_stage": RUNS.c.lifecycle_stage,
            "_pk": RUNS.c.id,
        }

    def change_tracking_run(self, ref: RunRef, **values: Any) -> None:
        """end_time, run_name (kept equal to the mlflow.runName tag) or the lifecycle stage."""
        with self.connect(write=True) as conn:
            conn.execute(update(RUNS).where(RUNS.c.id == ref.pk).values(**values))
            if "run_name" in values:
                row = {"run_id": ref.pk, "key": RUN_NAME_TAG, "value": values["run_name"]}
                self._upsert(conn, TAGS, [row], ["run_id", "key"])
        if "lifecycle_stage" in values:
            self._run_refs.pop(ref.run_id, None)

    # ---- what runs log

    def log_data(
        self,
        ref: RunRef,
        points: Sequence[Point] = (),
        params: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Metric points (as `point` gives them), params and tags, all in one transaction: a param that
        has another value already refuses the whole batch. On PostgreSQL these commits do not wait for
        the WAL to reach the disk (synchronous_commit off): as SQLite's WAL with synchronous=NORMAL, a
        crash of the machine may lose the last moments of metrics, and nothing is ever corrupted."""
        pk = ref.pk
        latest: dict[str, Point] = {}
        counts: dict[str, int] = {}
        for p in points:
            best = latest.get(p[0])
            if best is None:
                latest[p[0]], counts[p[0]] = p, 1
            else:
                counts[p[0]] += 1
                if (p[1], p[2], p[3]) > (best[1], best[2], best[3]):
                    latest[p[0]] = p
        newest = [(*p, counts[k]) for k, p in latest.items()]
        if not params and not tags:
            if not points:
                return
            if self.is_sqlite:
                self._write_points(pk, points, newest)
                return
            self._write_points_pg(pk, points, newest)
            return
        with self.connect(write=True) as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            if params:
                self._add_params(conn, pk, params)
            if tags:
                values = [{"run_id": pk, "key": k, "value": v} for k, v in dict(tags).items()]
                self._upsert(conn, TAGS, values, ["run_id", "key"])
                if RUN_NAME_TAG in dict(tags):
                    stmt = update(RUNS).where(RUNS.c.id == pk).values(run_name=dict(tags)[RUN_NAME_TAG])
                    conn.execute(stmt)
            if points:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    self._insert_points(cursor, pk, points, newest)
                finally:
                    cursor.close()

    def _add_params(self, conn: Connection, pk: int, params: Sequence[tuple[str, str]]) -> None:
        wanted: dict[str, str] = {}
        for key, value in params:
            if wanted.setdefault(key, value) != value:
                raise Invalid(
                    f"Duplicate parameter keys have been submitted: ['{key}'] with different values",
                    [FieldError(f"params[{key}]", "is given twice with different values")],
                )
        dialect_insert = sqlite.insert if self.is_sqlite else postgresql.insert
        rows = [{"run_id": pk, "key": k, "value": v} for k, v in wanted.items()]
        stmt = dialect_insert(PARAMS).values(rows).on_conflict_do_nothing().returning(PARAMS.c.key)
        added = set(conn.execute(stmt).scalars())
        old = [k for k in wanted if k not in added]
        if not old:
            return
        q = select(PARAMS.c.key, PARAMS.c.value).where(PARAMS.c.run_id == pk, PARAMS.c.key.in_(old))
        for key, value in conn.execute(q):
            if value != wanted[key]:
                raise Invalid(
                    f"Changing param values is not allowed. Param with key='{key}' was already logged "
                    f"with value='{value}' for run ID='{run_hex(self._uid_of(conn, pk))}'. "
                    f"Attempted logging new value '{wanted[key]}'.",
                    [
                        FieldError(
                            f"params[{key}]", "was logged before with another value; params cannot change"
                        )
                    ],
                )

    @staticmethod
    def _uid_of(conn: Connection, pk: int) -> str:
        return conn.execute(select(RUNS.c.uid).where(RUNS.c.id == pk)).scalar() or ""

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
        dialect_insert = sqlite.insert if self.is_sqlite else postgresql.insert
        stmt = dialect_insert(table).values(rows)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={"value": stmt.excluded.value})
        conn.execute(stmt)

    def delete_run_tag(self, ref: RunRef, key: str) -> bool:
        with self.connect(write=True) as conn:
            gone = conn.execute(delete(TAGS).where(TAGS.c.run_id == ref.pk, TAGS.c.key == key)).rowcount
        return bool(gone)

    def add_inputs(self, ref: RunRef, inputs: Sequence[tuple[str, str, dict, list]]) -> None:
        """(name, digest, dataset, input tags); a dataset logged again keeps its first record."""
        rows = [
            {"run_id": ref.pk, "name": n, "digest": d, "dataset": ds, "tags": t} for n, d, ds, t in inputs
        ]
        if not rows:
            return
        dialect_insert = sqlite.insert if self.is_sqlite else postgresql.insert
        with self.connect(write=True) as conn:
            conn.execute(dialect_insert(INPUTS).values(rows).on_conflict_do_nothing())


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _new_experiment(project: str, name: str, artifact_location: str | None) -> dict[str, Any]:
    t = ms()
    return {
        "project": project,
        "name": name,
        "artifact_location": artifact_location,
        "lifecycle_stage": ACTIVE,
        "creation_time": t,
        "last_update_time": t,
    }
