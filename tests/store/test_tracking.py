"""Tracking on real SQLite and PostgreSQL: MLflow's rules for what is logged, the tracking row that every
Run has, experiments, and reading back (history order, latest values)."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import func, select

from runyard.core.errors import Conflict, Invalid, NotFound
from runyard.core.phases import Phase
from runyard.core.resources import ObjectMeta, Run, RunSpec
from runyard.services.tracking import Tracking
from runyard.store.tracking import EXPERIMENT_ANNOTATION, LATEST, METRICS, PARAMS, RESOURCES, RUNS, TAGS

MAX = 1.7976931348623157e308


@pytest.fixture
def tracking(store) -> Tracking:
    return Tracking(store)


def point(key: str, value: float, step: int = 0, timestamp: int = 1000) -> dict:
    return {"key": key, "value": value, "timestamp": timestamp, "step": step}


def executed_run(store, name: str = "r1", project: str = "default", annotations: dict | None = None) -> Run:
    """A Run as the controller creates one (it has a command)."""
    meta = ObjectMeta(name=name, project=project, annotations=annotations or {})
    return store.create(Run(metadata=meta, spec=RunSpec(command="python train.py")))


def count(store, table, **where) -> int:
    q = select(func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with store.connect() as conn:
        return conn.execute(q).scalar_one()


def test_a_run_created_through_the_store_is_tracked_in_its_projects_default_experiment(store, tracking):
    run = executed_run(store)
    ref = tracking.run(run.uid)
    assert ref.run_id == run.uid.replace("-", "") and ref.name == "r1" and not ref.tracking_only
    assert tracking.run(ref.run_id) == ref  # both id forms
    exp = tracking.get_experiment("default", ref.experiment_id)
    assert exp["name"] == "Default"
    assert tracking.get_experiment("default", "0")["experiment_id"] == ref.experiment_id
    assert tracking.default_experiment("default") == ref.experiment_id
    info = tracking.get_run(ref)["info"]
    assert info["status"] == "SCHEDULED" and info["run_name"] == "r1"
    assert info["artifact_uri"] == f"mlflow-artifacts:/default/{ref.experiment_id}/{ref.run_id}/artifacts"


def test_an_executed_runs_status_follows_its_phase_and_ends_with_an_end_time(store, tracking):
    run = executed_run(store)
    ref = tracking.run(run.uid)
    for phase, status in (("Running", "RUNNING"), ("Failed", "FAILED")):
        run.status.phase = Phase(phase)
        run = store.update_status(run)
        assert tracking.get_run(ref)["info"]["status"] == status
    assert tracking.get_run(ref)["info"]["end_time"] > 0


def test_the_experiment_annotation_places_a_run_and_a_wrong_one_refuses_the_run(store, tracking):
    exp_id = tracking.create_experiment("default", "mine")
    run = executed_run(store, annotations={EXPERIMENT_ANNOTATION: exp_id})
    assert tracking.run(run.uid).experiment_id == exp_id
    other = tracking.create_experiment("other", "theirs")
    with pytest.raises(Invalid) as err:
        executed_run(store, "r2", annotations={EXPERIMENT_ANNOTATION: other})
    assert EXPERIMENT_ANNOTATION in err.value.details[0].field
    assert count(store, RUNS) == 1  # the refused Run left nothing behind
    with pytest.raises(NotFound):
        tracking.run_by_name("default", "r2")


def test_deleting_the_run_resource_deletes_every_tracking_row_with_it(store, tracking):
    run = executed_run(store)
    ref = tracking.run(run.uid)
    tracking.log_batch(ref, [point("loss", 1.0, s) for s in range(5)], [{"key": "lr", "value": "0.1"}])
    tracking.set_tag(ref, "team", "a")
    keep = tracking.run(executed_run(store, "r2").uid)
    tracking.log_metric(keep, "loss", 2.0, 1)
    store.delete(run.uid)
    for table in (METRICS, LATEST, PARAMS, TAGS):
        assert count(store, table, run_id=ref.pk) == 0
    assert count(store, RUNS, uid=run.uid) == 0
    with pytest.raises(NotFound):
        tracking.run(ref.run_id)  # the cached lookup went with it
    assert len(tracking.metric_history(keep, "loss")[0]) == 1


def test_create_run_makes_a_tracking_only_run_named_from_its_run_name(store, tracking):
    got = tracking.create_run("default", "0", run_name="baseline", tags=[{"key": "t", "value": "v"}])
    ref = tracking.run(got["info"]["run_id"])
    res = store.get(Run, "default", "baseline")
    assert ref.name == "baseline" and ref.tracking_only
    assert res.spec.trackingOnly and res.status.phase == Phase.RUNNING and res.status.startedAt
    assert res.metadata.annotations[EXPERIMENT_ANNOTATION] == ref.experiment_id
    assert got["info"]["status"] == "RUNNING"
    assert {"key": "mlflow.runName", "value": "baseline"} in got["data"]["tags"]
    # taken, and not a valid name: generated names, the run name kept as given
    again = tracking.create_run("default", "0", run_name="baseline")
    spaced = tracking.create_run("default", "0", run_name="My Run #2")
    assert tracking.run(again["info"]["run_id"]).name.startswith("baseline-")
    assert tracking.run(spaced["info"]["run_id"]).name.startswith("my-run-2-")
    assert spaced["info"]["run_name"] == "My Run #2"
    named = tracking.create_run("default", "0", name="wanted")
    assert tracking.run(named["info"]["run_id"]).name == "wanted"
    with pytest.raises(Conflict):
        tracking.create_run("default", "0", name="wanted")


def test_update_run_ends_a_tracking_only_run_but_never_changes_an_executed_runs_phase(store, tracking):
    ref = tracking.run(tracking.create_run("default", "0")["info"]["run_id"])
    info = tracking.update_run(ref, status="KILLED", end_time=1234)
    assert info["status"] == "KILLED" and info["end_time"] == 1234
    assert store.get_uid(ref.uid).status.phase == Phase.CANCELLED
    info = tracking.update_run(ref, status="RUNNING")  # MLflow resumes a run this way
    assert info["status"] == "RUNNING" and "end_time" not in info
    tracking.update_run(ref, status="FINISHED")
    assert store.get_uid(ref.uid).status.phase == Phase.SUCCEEDED

    executed = tracking.run(executed_run(store).uid)
    info = tracking.update_run(executed, status="FINISHED", end_time=99, run_name="renamed")
    assert info["status"] == "SCHEDULED" and info["end_time"] == 99 and info["run_name"] == "renamed"
    assert store.get_uid(executed.uid).status.phase == Phase.PENDING
    tags = tracking.get_run(executed)["data"]["tags"]
    assert {"key": "mlflow.runName", "value": "renamed"} in tags


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        (point("bad*key", 1), "metrics[1].key"),
        (point("a/../b", 1), "metrics[1].key"),
        (point("/abs", 1), "metrics[1].key"),
        (point("k" * 251, 1), "metrics[1].key"),
        (point("ok", "high"), "metrics[1].value"),  # type: ignore[arg-type]
        (point("ok", True), "metrics[1].value"),
        ({"key": "ok", "value": 1, "timestamp": -1, "step": 0}, "metrics[1].timestamp"),
        ({"key": "ok", "value": 1, "timestamp": 1, "step": 2**63}, "metrics[1].step"),
        ({"key": "ok", "value": 1, "timestamp": 1, "step": 1.5}, "metrics[1].step"),
    ],
)
def test_an_invalid_metric_refuses_the_whole_batch_naming_its_field(store, tracking, metric, field):
    ref = tracking.run(executed_run(store).uid)
    with pytest.raises(Invalid) as err:
        tracking.log_batch(ref, [point("good", 1.0), metric], [{"key": "p", "value": "1"}])
    assert err.value.details[0].field == field
    assert tracking.get_run(ref)["data"]["metrics"] == [] and tracking.get_run(ref)["data"]["params"] == []


def test_batch_limits_and_value_lengths_are_mlflows(store, tracking):
    ref = tracking.run(executed_run(store).uid)
    tracking.log_batch(ref)  # an empty batch is fine
    cases = [
        ({"metrics": [point("m", 1.0)] * 1001}, "metrics"),
        ({"params": [{"key": f"p{i}", "value": "v"} for i in range(101)]}, "params"),
        ({"tags": [{"key": f"t{i}", "value": "v"} for i in range(101)]}, "tags"),
        (
            {
                "metrics": [point("m", 1.0)] * 950,
                "params": [{"key": f"p{i}", "value": "v"} for i in range(51)],
            },
            "metrics",
        ),
        ({"params": [{"key": "p", "value": "x" * 6001}]}, "params[0].value"),
        ({"tags": [{"key": "t", "value": "x" * 8001}]}, "tags[0].value"),
    ]
    for kwargs, field in cases:
        with pytest.raises(Invalid) as err:
            tracking.log_batch(ref, **kwargs)
        assert err.value.details[0].field == field
    tracking.log_batch(
        ref, params=[{"key": "p", "value": "x" * 6000}], tags=[{"key": "t", "value": "x" * 8000}]
    )
    tracking.log_batch(
        ref, [point("m", 1.0, s) for s in range(5000)], max_metrics=10_000
    )  # runyard's own path
    assert count(store, METRICS, run_id=ref.pk) == 5000


def test_nan_and_infinities_are_stored_and_returned_as_mlflow_does(store, tracking):
    ref = tracking.run(executed_run(store).uid)
    tracking.log_batch(ref, [point("x", math.nan, 0), point("x", math.inf, 1), point("x", -math.inf, 2)])
    tracking.log_batch(ref, [point("y", "NaN", 0), point("y", "Infinity", 1)])  # protobuf's JSON words
    history, _ = tracking.metric_history(ref, "x")
    assert math.isnan(history[0]["value"]) and history[1]["value"] == MAX and history[2]["value"] == -MAX
    latest = {m["key"]: m for m in tracking.latest_metrics(ref)}
    assert latest["x"]["value"] == -MAX and latest["y"]["value"] == MAX
    body = json.loads(tracking.metric_history_json(ref, "x"))
    assert [m["value"] for m in body["metrics"]] == ["NaN", MAX, -MAX]
    assert body["metrics"][0] == {"key": "x", "value": "NaN", "timestamp": 1000, "step": 0}


def test_a_param_keeps_its_first_value(store, tracking):
    ref = tracking.run(executed_run(store).uid)
    tracking.log_param(ref, "lr", "0.1")
    tracking.log_param(ref, "lr", "0.1")  # the same value again is fine
    with pytest.raises(Invalid) as err:
        tracking.log_batch(
            ref, [point("m", 1.0)], [{"key": "lr", "value": "0.2"}, {"key": "new", "value": "1"}]
        )
    assert "lr" in err.value.message
    data = tracking.get_run(ref)["data"]
    assert (
        data["params"] == [{"key": "lr", "value": "0.1"}] and data["metrics"] == []
    )  # nothing of it written
    with pytest.raises(Invalid):
        tracking.log_batch(ref, params=[{"key": "b", "value": "1"}, {"key": "b", "value": "2"}])


def test_history_is_by_step_then_timestamp_and_latest_is_the_largest_step(store, tracking):
    ref = tracking.run(executed_run(store).uid)
    pts = [
        point("loss", 3.0, 2, 10),
        point("loss", 1.0, 0, 30),
        point("loss", 2.5, 2, 5),
        point("loss", 2.0, 1, 1),
    ]
    for p in pts:
        tracking.log_metric(ref, p["key"], p["value"], p["timestamp"], p["step"])
    history, token = tracking.metric_history(ref, "loss")
    assert [(h["step"], h["timestamp"]) for h in history] == [
        (0, 30),
        (1, 1),
        (2, 5),
        (2, 10),
    ] and token is None
    assert tracking.latest_metrics(ref) == [{"key": "loss", "value": 3.0, "timestamp": 10, "step": 2}]
    tracking.log_metric(ref, "loss", 9.0, 1, 1)  # an older step does not replace the latest
    assert tracking.latest_metrics(ref)[0]["value"] == 3.0
    first, token = tracking.metric_history(ref, "loss", max_results=3)
    rest, end = tracking.metric_history(ref, "loss", max_results=3, page_token=token)
    assert len(first) == 3 and len(rest) == 2 and end is None
    assert tracking.metric_history(ref, "missing") == ([], None)


def test_experiments_are_named_uniquely_per_project_and_0_is_the_callers_default(store, tracking):
    a = tracking.create_experiment("default", "exp", tags=[{"key": "k", "value": "v"}])
    assert tracking.create_experiment("other", "exp") != a  # another project may use the name
    with pytest.raises(Conflict):
        tracking.create_experiment("default", "exp")
    got = tracking.get_experiment_by_name("default", "exp")
    assert got["experiment_id"] == a and got["tags"] == [{"key": "k", "value": "v"}]
    assert got["artifact_location"] == f"mlflow-artifacts:/default/{a}"
    assert tracking.experiment_project(a, "other") == "default"
    assert tracking.experiment_project("0", "other") == "other"
    assert tracking.get_experiment("other", "0")["name"] == "Default"
    tracking.update_experiment("default", a, "renamed")
    with pytest.raises(NotFound):
        tracking.get_experiment_by_name("default", "exp")
    with pytest.raises(Invalid):
        tracking.create_experiment("default", "")
    with pytest.raises(Invalid):
        tracking.delete_experiment("default", "0")
    with pytest.raises(Invalid):
        tracking.update_experiment("default", "0", "Renamed")
    with pytest.raises(NotFound):
        tracking.get_experiment("default", "999999")


def test_an_experiment_may_keep_artifacts_only_in_its_own_projects_folder(tracking):
    """Else deleting its runs would remove files of the project its location names."""
    with pytest.raises(Invalid, match="inside project 'attacker'"):
        tracking.create_experiment("attacker", "steal", artifact_location="mlflow-artifacts:/victim/x")
    own = tracking.create_experiment("attacker", "own", artifact_location="mlflow-artifacts:/attacker/x")
    assert tracking.get_experiment("attacker", own)["artifact_location"] == "mlflow-artifacts:/attacker/x"
    elsewhere = tracking.create_experiment("attacker", "s3", artifact_location="s3://bucket/x")
    assert tracking.get_experiment("attacker", elsewhere)["artifact_location"] == "s3://bucket/x"


def test_deleting_an_experiment_deletes_its_runs_softly_and_restoring_brings_them_back(store, tracking):
    exp = tracking.create_experiment("default", "e")
    ref = tracking.run(tracking.create_run("default", exp)["info"]["run_id"])
    tracking.delete_experiment("default", exp)
    assert tracking.get_run(tracking.run(ref.run_id))["info"]["lifecycle_stage"] == "deleted"
    names = [e["name"] for e in tracking.search_experiments("default", view_type="DELETED_ONLY")[0]]
    assert names == ["e"]
    with pytest.raises(Invalid):
        tracking.create_run("default", exp)
    tracking.restore_experiment("default", exp)
    assert tracking.get_run(tracking.run(ref.run_id))["info"]["lifecycle_stage"] == "active"


def test_a_deleted_run_takes_no_data_and_shows_only_in_the_deleted_view(store, tracking):
    ref = tracking.run(tracking.create_run("default", "0")["info"]["run_id"])
    tracking.delete_run(ref)
    with pytest.raises(Invalid):
        tracking.log_metric(tracking.run(ref.run_id), "m", 1.0, 1)
    assert tracking.search_runs("default", ["0"])[0] == []
    assert len(tracking.search_runs("default", ["0"], view_type="DELETED_ONLY")[0]) == 1
    assert len(tracking.search_runs("default", ["0"], view_type="ALL")[0]) == 1
    tracking.restore_run(tracking.run(ref.run_id))
    tracking.log_metric(tracking.run(ref.run_id), "m", 1.0, 1)


def test_delete_tag_removes_it_and_a_missing_one_is_not_found(store, tracking):
    ref = tracking.run(executed_run(store).uid)
    tracking.set_tag(ref, "a", "1")
    tracking.set_tag(ref, "a", "2")  # tags may change
    assert {"key": "a", "value": "2"} in tracking.get_run(ref)["data"]["tags"]
    tracking.delete_tag(ref, "a")
    with pytest.raises(NotFound):
        tracking.delete_tag(ref, "a")


def test_inputs_are_kept_once_per_dataset(store, tracking):
    ref = tracking.run(executed_run(store).uid)
    ds = {"name": "iris", "digest": "abc", "source_type": "local", "source": "{}"}
    inputs = [{"tags": [{"key": "mlflow.data.context", "value": "train"}], "dataset": ds}]
    tracking.log_inputs(ref, inputs)
    tracking.log_inputs(ref, inputs)
    assert tracking.get_run(ref)["inputs"]["dataset_inputs"] == inputs
    with pytest.raises(Invalid):
        tracking.log_inputs(ref, [{"dataset": {"name": "x"}}])


@pytest.fixture
def runs(store, tracking) -> dict[str, str]:
    """Five runs with params, metrics and tags to search among: name -> run id."""
    out = {}
    for i, (lr, loss, team) in enumerate(
        [(0.1, 0.5, "Red"), (0.01, 0.3, "red"), (0.001, 0.2, "blue"), (0.1, 0.9, "blue")]
    ):
        got = tracking.create_run("default", "0", run_name=f"run-{i}", start_time=1000 + i)
        ref = tracking.run(got["info"]["run_id"])
        tracking.log_batch(
            ref,
            [point("loss", loss), point("val loss", loss * 2)],
            [{"key": "lr", "value": str(lr)}, {"key": "team", "value": team}],
            [{"key": "team", "value": team}],
        )
        out[f"run-{i}"] = ref.run_id
    out["bare"] = tracking.create_run("default", "0", run_name="bare", start_time=2000)["info"]["run_id"]
    return out


def names(result) -> list[str]:
    return [r["info"]["run_name"] for r in result[0]]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ("metrics.loss > 0.25", {"run-0", "run-1", "run-3"}),
        ("metrics.loss >= 0.3 AND params.lr = '0.1'", {"run-0", "run-3"}),
        ("metrics.`val loss` < 0.5", {"run-2"}),
        ('metrics."val loss" = 0.6', {"run-1"}),
        ("params.lr != '0.1'", {"run-1", "run-2"}),
        ("params.lr > 0.005", {"run-0", "run-1", "run-3"}),  # a number: compared as numbers
        ("params.lr <= 1e-2", {"run-1", "run-2"}),
        ("params.team = 1", set()),
        ("tags.team = 'red'", {"run-1"}),
        ("tags.team LIKE 'r%'", {"run-1"}),
        ("tags.team ILIKE 'r%'", {"run-0", "run-1"}),
        ("tags.team IS NULL", {"bare"}),
        ("params.lr IS NOT NULL", {"run-0", "run-1", "run-2", "run-3"}),
        ("attributes.run_name = 'run-2'", {"run-2"}),
        ("run_name LIKE 'run-%'", {"run-0", "run-1", "run-2", "run-3"}),
        ("attributes.status = 'RUNNING' and attributes.start_time >= 1003", {"run-3", "bare"}),
        ("attributes.run_name IN ('run-1', 'bare')", {"run-1", "bare"}),
        ("attributes.run_name NOT IN ('run-1', 'bare')", {"run-0", "run-2", "run-3"}),
        ("tags.`mlflow.runName` = 'run-0'", {"run-0"}),
        ("", {"run-0", "run-1", "run-2", "run-3", "bare"}),
    ],
)
def test_search_filters_runs_in_sql(tracking, runs, filter, expected):
    assert set(names(tracking.search_runs("default", ["0"], filter=filter))) == expected


def test_search_by_run_id(tracking, runs):
    got = tracking.search_runs("default", ["0"], filter=f"attributes.run_id IN ('{runs['run-1']}')")
    assert names(got) == ["run-1"]


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.loss > 'high'",
        "params.lr > '0.1'",
        "loss > 1",
        "metric.loss > 1 OR metrics.loss < 0",
        "nothing.x = 'a'",
        "metrics.loss >",
        "tags.t = 'unterminated",
        "attributes.start_time = 'x'",
    ],
)
def test_a_bad_filter_is_invalid_and_says_why(tracking, runs, bad):
    with pytest.raises(Invalid) as err:
        tracking.search_runs("default", ["0"], filter=bad)
    assert err.value.details and err.value.details[0].field == "filter"


def test_search_orders_by_metrics_params_tags_and_attributes(tracking, runs):
    def order(*keys: str, filter: str = "") -> list[str]:
        return names(tracking.search_runs("default", ["0"], filter=filter, order_by=list(keys)))

    assert order() == ["bare", "run-3", "run-2", "run-1", "run-0"]  # newest first
    assert order("metrics.loss") == ["run-2", "run-1", "run-0", "run-3", "bare"]  # missing values last
    assert order("metrics.loss DESC") == ["run-3", "run-0", "run-1", "run-2", "bare"]
    assert order("params.lr ASC", "attributes.start_time DESC") == [
        "run-2",
        "run-1",
        "run-3",
        "run-0",
        "bare",
    ]
    lower = "tags.team != 'Red'"  # how upper and lower case sort is the database's collation
    assert order("tags.team DESC", "start_time", filter=lower) == ["run-1", "run-2", "run-3"]
    assert order("attributes.run_name DESC") == ["run-3", "run-2", "run-1", "run-0", "bare"]
    with pytest.raises(Invalid):
        order("metrics.loss SIDEWAYS")


def test_search_pages_cover_every_run_once(tracking, runs):
    seen, token = [], None
    while True:
        page, token = tracking.search_runs(
            "default", ["0"], max_results=2, order_by=["metrics.loss"], page_token=token
        )
        seen += [r["info"]["run_name"] for r in page]
        if token is None:
            break
    assert seen == ["run-2", "run-1", "run-0", "run-3", "bare"]
    with pytest.raises(Invalid):
        tracking.search_runs("default", ["0"], page_token="not-a-token")
    with pytest.raises(Invalid):
        tracking.search_runs("default", ["0"], max_results=50001)


def test_search_returns_each_runs_latest_metrics_params_and_tags(tracking, runs):
    got = tracking.search_runs("default", ["0"], filter="attributes.run_name = 'run-1'")[0][0]
    assert got["data"]["params"] == [{"key": "lr", "value": "0.01"}, {"key": "team", "value": "red"}]
    assert {m["key"]: m["value"] for m in got["data"]["metrics"]} == {"loss": 0.3, "val loss": 0.6}
    assert {"key": "team", "value": "red"} in got["data"]["tags"]


def test_search_experiments_filters_and_orders(tracking):
    for name in ("alpha", "beta", "gamma"):
        tracking.create_experiment("default", name, tags=[{"key": "kind", "value": name[0]}])
    got, _ = tracking.search_experiments(
        "default", filter="name LIKE '%a' AND tags.kind != 'b'", order_by=["name DESC"]
    )
    assert [e["name"] for e in got] == ["gamma", "alpha"]
    everything, _ = tracking.search_experiments("default", order_by=["name"])
    assert [e["name"] for e in everything] == ["Default", "alpha", "beta", "gamma"]
    page, token = tracking.search_experiments("default", max_results=3, order_by=["name"])
    rest, end = tracking.search_experiments("default", max_results=3, order_by=["name"], page_token=token)
    assert [e["name"] for e in page + rest] == ["Default", "alpha", "beta", "gamma"] and end is None


def test_a_hundred_thousand_points_read_back_complete_and_in_order(store, tracking):
    ref = tracking.run(executed_run(store).uid)
    for start in range(0, 100_000, 10_000):
        batch = [point("loss", float(s), s, 1000 + s) for s in range(start + 9_999, start - 1, -1)]
        tracking.log_batch(ref, batch, max_metrics=10_000)
    history, token = tracking.metric_history(ref, "loss")
    assert token is None and len(history) == 100_000
    assert [h["step"] for h in history] == list(range(100_000))
    body = json.loads(tracking.metric_history_json(ref, "loss"))
    assert len(body["metrics"]) == 100_000 and body["metrics"][-1]["value"] == 99_999.0
    assert tracking.latest_metrics(ref)[0]["step"] == 99_999


def test_the_migration_gives_runs_stored_before_it_a_tracking_row(store_url):
    """Downgrade below 0007, store a Run the old way, upgrade: it is tracked in its Default experiment."""
    from alembic import command
    from alembic.config import Config

    from runyard.store import Store
    from runyard.store.engine import MIGRATIONS

    store = Store(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with store.connect(write=True) as conn:
        conn.execute(RESOURCES.insert(), _old_run_row())
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    store.close()
    store = Store(store_url)
    ref = Tracking(store).run("0b0b0b0b-0000-4000-8000-000000000001")
    info = Tracking(store).get_run(ref)["info"]
    assert ref.name == "old" and info["status"] == "FINISHED" and info["end_time"] > 0
    assert Tracking(store).get_experiment("proj", ref.experiment_id)["name"] == "Default"
    assert info["artifact_uri"].startswith(f"mlflow-artifacts:/proj/{ref.experiment_id}/")
    store.close()


def _old_run_row() -> dict:
    from datetime import UTC, datetime

    t = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "uid": "0b0b0b0b-0000-4000-8000-000000000001",
        "project": "proj",
        "kind": "Run",
        "name": "old",
        "labels": {},
        "annotations": {},
        "spec": {"command": "true"},
        "status": {"phase": "Succeeded"},
        "phase": "Succeeded",
        "resource_version": 1,
        "generation": 1,
        "created_at": t,
        "updated_at": t,
    }


def test_a_kept_history_is_served_again_only_while_no_point_was_added(store_url):
    """Histories are kept encoded; a point added by another server (another store) is seen at once."""
    from runyard.store import Store

    here, there = Store(store_url), Store(store_url)
    a, b = Tracking(here), Tracking(there)
    ref = a.run(a.create_run("default", "0")["info"]["run_id"])
    a.log_batch(ref, [point("m", 1.0, s) for s in range(3)])
    first = a.metric_history_json(ref, "m")
    assert a.metric_history_json(ref, "m") is first  # served from memory
    b.log_metric(b.run(ref.run_id), "m", 9.0, 1, 0)  # an old step: not the latest, but a fourth point
    again = json.loads(a.metric_history_json(ref, "m"))
    assert [m["value"] for m in again["metrics"]] == [9.0, 1.0, 1.0, 1.0]  # step 0, an earlier time
    assert a.latest_metrics(ref)[0]["step"] == 2
    here.close()
    there.close()


@pytest.mark.postgres
def test_a_metric_write_survives_its_kept_connection_being_dropped():
    """PostgreSQL: metric writes keep connections of their own; one the server dropped is replaced."""
    import psycopg
    from tests.support import fresh_postgres_database

    from runyard.store import Store

    url = fresh_postgres_database()
    store = Store(url)
    tracking = Tracking(store)
    ref = tracking.run(tracking.create_run("default", "0")["info"]["run_id"])
    tracking.log_metric(ref, "m", 1.0, 1, 0)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as admin:
        others = "datname = %s AND pid <> pg_backend_pid()"
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}", (name,))
    tracking.log_metric(ref, "m", 2.0, 1, 1)
    assert [m["value"] for m in tracking.metric_history(ref, "m")[0]] == [1.0, 2.0]
    store.close()


def test_an_encoded_history_gives_back_every_double_exactly(store, tracking):
    import random

    ref = tracking.run(executed_run(store).uid)
    values = [random.random() * 10 ** random.randint(-300, 300) for _ in range(500)] + [
        0.1,
        1 / 3,
        -0.0,
        1e-320,
    ]
    tracking.log_batch(ref, [point("x", v, i) for i, v in enumerate(values)])
    got = json.loads(tracking.metric_history_json(ref, "x"))["metrics"]
    assert [m["value"] for m in got] == values
    assert [m["step"] for m in got] == list(range(len(values)))
