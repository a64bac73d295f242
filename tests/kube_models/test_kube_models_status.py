"""A Model's status from its Deployment (pure: no cluster): when a rollout counts as finished, and the phase
each state of it gives, as the local models controller names them."""

from __future__ import annotations

from typing import Any

import pytest

from runyard.controller.kube.models import model_status, replicas_of, rollout_done
from runyard.controller.models.versions import version_for
from runyard.core.resources import Model, ModelSpec, ModelStatus, ObjectMeta


def model(**spec: Any) -> tuple[Model, ModelStatus, int]:
    m = Model(
        metadata=ObjectMeta(name="iris", project="vision", uid="u-1", generation=3),
        spec=ModelSpec(handler="serve:predict", **spec),
    )
    st = m.status.model_copy(deep=True)
    version, _ = version_for(st, m.spec, None)
    return m, st, version.version


def deployment(version: int, want: int, generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation, "annotations": {"runyard.dev/model-version": str(version)}},
        "spec": {"replicas": want},
        "status": status,
    }


def done(version: int, want: int) -> dict[str, Any]:
    n = {"replicas": want, "updatedReplicas": want, "readyReplicas": want, "availableReplicas": want}
    return deployment(version, want, observedGeneration=2, **n)


@pytest.mark.parametrize(
    ("status", "finished"),
    [
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, True),
        ({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, False),
        ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}, False),
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}, False),
        ({}, False),
    ],
)
def test_a_rollout_is_finished_when_every_replica_runs_the_latest_spec(status: dict, finished: bool) -> None:
    assert rollout_done(deployment(1, 2, **status)) is finished


def test_replicas_come_from_the_spec_or_the_autoscaling_minimum_never_zero_with_autoscaling() -> None:
    assert replicas_of(ModelSpec(handler="a:b", replicas=3)) == 3
    assert replicas_of(ModelSpec(handler="a:b", replicas=0)) == 0
    assert replicas_of(ModelSpec(handler="a:b", autoscaling={"minReplicas": 2, "maxReplicas": 5})) == 2
    assert replicas_of(ModelSpec(handler="a:b", autoscaling={"minReplicas": 0, "maxReplicas": 5})) == 1


def test_phases_through_a_first_rollout_and_after() -> None:
    m, st, v = model(replicas=2)
    st = model_status(m, st, v, 2, deployment(v, 2, observedGeneration=2, replicas=2, readyReplicas=1))
    assert (st.phase, st.reason, st.currentVersion, st.targetVersion) == (
        "Pending",
        "ReplicasStarting",
        None,
        v,
    )
    st = model_status(m, st, v, 2, done(v, 2))
    assert (st.phase, st.currentVersion, st.targetVersion, st.readyReplicas) == ("Ready", v, None, 2)
    assert st.url == "http://iris.vision.svc" and st.observedGeneration == 3 and st.runs == []
    st = model_status(m, st, v, 2, deployment(v, 2, observedGeneration=2, replicas=2, readyReplicas=0))
    assert (st.phase, st.reason, st.currentVersion) == ("Pending", "NoReplicaReady", v)  # it served: stays


def test_a_new_version_updates_until_done_and_a_stall_says_so() -> None:
    m, st, v1 = model(replicas=1)
    st = model_status(m, st, v1, 1, done(v1, 1))
    v2, _ = version_for(st, ModelSpec(handler="serve:other"), None)
    stuck = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": "slow",
    }
    # The Deployment not yet replaced (it still names version 1): version 1 serves, 2 is the target.
    st = model_status(m, st, v2.version, 1, done(v1, 1))
    assert (st.phase, st.currentVersion, st.targetVersion) == ("Updating", v1, v2.version)
    st = model_status(m, st, v2.version, 1, deployment(v2.version, 1, conditions=[stuck], replicas=2))
    assert (st.phase, st.reason, st.currentVersion) == ("Updating", "RolloutStalled", v1)
    assert "slow" in (st.message or "") and f"version {v1} serves" in (st.message or "")
    st = model_status(m, st, v2.version, 1, done(v2.version, 1))
    assert (st.phase, st.reason, st.currentVersion, st.targetVersion) == (
        "Ready",
        "Serving",
        v2.version,
        None,
    )


def test_zero_replicas_is_scaled_to_zero() -> None:
    m, st, v = model(replicas=0)
    st = model_status(m, st, v, 0, done(v, 0))
    assert (st.phase, st.currentVersion, st.desiredReplicas) == ("ScaledToZero", v, 0)
