"""A list's items come straight from rows as JSON: they must equal what the models would have dumped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter
from tests.support import experiment, resource

from runyard.core.clock import aware, now
from runyard.core.phases import Phase
from runyard.core.resources import ALL_KINDS, Attempt, Run, parse_workload
from runyard.store.documents import _time


def test_documents_of_every_kind_equal_the_models_dump(store):
    docs = [
        experiment("e", ["python", "-c", "print('ü')"], env={"A": "1"}),
        resource("Session", "s", editor="terminal"),
        resource("Job", "j", schedule="0 3 * * *", template={"command": "true"}),
        resource("Model", "m", handler="serve:predict", replicas=2),
    ]
    docs[0]["metadata"].update(labels={"team": "cv"}, annotations={"note": 'a "quoted" value'})
    made = [store.create(parse_workload(d)) for d in docs]
    exp = made[0]
    run = Run.model_validate(
        {
            "metadata": {
                "name": "e",
                "ownerReferences": [{"kind": "Experiment", "name": "e", "uid": exp.uid}],
            },
            "spec": exp.spec.model_dump(),
        }
    )
    run = store.create(run)
    run.status.phase = Phase.RUNNING
    run.status.startedAt = now()
    run.status.attempts = [Attempt(attempt=1, startedAt=now(), handle={"pid": 42})]
    run = store.update_status(run)
    store.mark_deleted(run)
    for kind in ALL_KINDS.values():
        expected = [r.model_dump(mode="json", exclude_none=True) for r in store.list(kind, "default")]
        got = [json.loads(d.json) for d in store.list_documents(kind, "default")]
        assert got == expected and expected, kind.__name__
    (deleted,) = store.list_documents(Run, "default")
    assert "deletionTimestamp" in json.loads(deleted.json)["metadata"]


@pytest.mark.parametrize(
    "dt",
    [
        datetime(2026, 12, 1, 15, 4, 19, 123456, tzinfo=UTC),
        datetime(2026, 12, 1, 15, 4, 19, tzinfo=UTC),  # no fraction when there are no microseconds
        datetime(2026, 12, 1, 15, 4, 19, 5),  # SQLite hands back naive UTC
        datetime(2026, 12, 1, 16, 4, 19, 5, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_times_are_written_as_pydantic_writes_them(dt):
    assert _time(dt) == TypeAdapter(datetime).dump_python(aware(dt), mode="json")
