"""The operator's decisions from cached objects (pure: no API server involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runyard.controller.kube.decide import (
    RunStep,
    current_attempt,
    experiment_status,
    launch_failed,
    launch_spec,
    run_for,
    step_run,
)
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Experiment, ObjectMeta, Run
from runyard.runtime.base import AttemptState, Observed

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HANDLE = {"namespace": "vision", "pod": "train-1"}


def experiment(**spec: object) -> Experiment:
    return Experiment(
        metadata=ObjectMeta(name="train", project="vision", uid="e-1", generation=1, labels={"team": "cv"}),
        spec={"command": "python train.py", **spec},
    )


def stored_run(**spec: object) -> Run:
    run = run_for(experiment(**spec))
    run.metadata.uid = "r-1"
    return run


def running(run: Run) -> Run:
    obs = Observed(
        AttemptState.RUNNING,
        started_at=NOW,
        limits={"mechanism": "kubernetes", "cpu": "1"},
        sandbox={"mechanism": "kubernetes-pod"},
    )
    step = step_run(run, obs, HANDLE, NOW)
    assert step.status is not None
    return run.model_copy(update={"status": step.status})


def test_the_run_of_an_experiment_is_named_and_owned_by_it() -> None:
    run = run_for(experiment())
    assert run.metadata.name == "train" and run.metadata.project == "vision"
    assert [(o.kind, o.name, o.uid) for o in run.metadata.ownerReferences] == [("Experiment", "train", "e-1")]
    assert run.spec.command == "python train.py" and run.metadata.labels == {"team": "cv"}


def test_a_new_run_without_a_pod_is_launched() -> None:
    step = step_run(stored_run(), None, HANDLE, NOW)
    assert (step.launch, step.status) == (1, None)


def test_a_running_pod_makes_the_run_running_in_one_write() -> None:
    run = running(stored_run())
    st = run.status
    assert st.phase == Phase.RUNNING and st.startedAt == NOW
    assert [(a.attempt, a.handle) for a in st.attempts] == [(1, HANDLE)]
    assert {c.type: c.status for c in st.conditions} == {"Admitted": "True", "Started": "True"}
    assert st.limits == {"mechanism": "kubernetes", "cpu": "1"} and st.sandbox == {
        "mechanism": "kubernetes-pod"
    }
    assert step_run(run, Observed(AttemptState.RUNNING), HANDLE, NOW).status is None  # nothing new


def test_exits_map_to_phases() -> None:
    run = running(stored_run())
    done = step_run(run, Observed(AttemptState.EXITED, exit_code=0, finished_at=NOW), HANDLE, NOW).status
    assert done is not None and (done.phase, done.reason, done.exitCode) == (Phase.SUCCEEDED, "Completed", 0)
    failed = step_run(run, Observed(AttemptState.EXITED, exit_code=3), HANDLE, NOW).status
    assert failed is not None and (failed.phase, failed.reason, failed.exitCode) == (Phase.FAILED, "Error", 3)
    oom = step_run(run, Observed(AttemptState.EXITED, exit_code=137, oom_killed=True), HANDLE, NOW).status
    assert oom is not None and (oom.phase, oom.reason) == (Phase.FAILED, Reason.OUT_OF_MEMORY)


def test_a_pod_that_ended_before_it_was_seen_running_still_succeeds() -> None:
    step = step_run(stored_run(), Observed(AttemptState.EXITED, exit_code=0), HANDLE, NOW)
    assert step.status is not None and step.status.phase == Phase.SUCCEEDED
    assert [a.attempt for a in step.status.attempts] == [1]


def test_a_pod_deleted_from_under_a_running_run_is_process_lost() -> None:
    step = step_run(running(stored_run()), None, HANDLE, NOW)
    assert step.status is not None
    assert (step.status.phase, step.status.reason, step.status.message) == (
        Phase.FAILED,
        Reason.PROCESS_LOST,
        "pod deleted",
    )


def test_a_failed_attempt_is_retried_after_its_backoff() -> None:
    run = running(stored_run(retryPolicy={"maxRetries": 1, "backoffSeconds": 5}))
    step = step_run(run, Observed(AttemptState.EXITED, exit_code=1), HANDLE, NOW)
    assert step.status is not None and step.status.phase == Phase.QUEUED and step.after == 5
    queued = run.model_copy(update={"status": step.status})
    assert current_attempt(queued) == 2
    assert step_run(queued, None, HANDLE, NOW + timedelta(seconds=1)).launch is None
    assert step_run(queued, None, HANDLE, NOW + timedelta(seconds=6)).launch == 2


def test_unschedulable_is_said_once() -> None:
    full = "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    obs = Observed(AttemptState.STARTING, message=full)
    step = step_run(stored_run(), obs, HANDLE, NOW)
    assert step.status is not None and step.status.phase == Phase.STARTING
    assert step.status.reason == Reason.UNSCHEDULABLE and "Insufficient" in (step.status.message or "")
    again = stored_run().model_copy(update={"status": step.status})
    assert step_run(again, obs, HANDLE, NOW).status is None


def test_a_stop_deletes_the_pod_then_cancels() -> None:
    run = running(stored_run())
    run.spec.stopRequested = True
    assert step_run(run, Observed(AttemptState.RUNNING), HANDLE, NOW).stop
    gone = step_run(run, None, HANDLE, NOW).status
    assert gone is not None and (gone.phase, gone.reason) == (Phase.CANCELLED, Reason.STOPPED)


def test_the_experiment_mirrors_its_run_once_it_ends() -> None:
    exp, run = experiment(), running(stored_run())
    assert experiment_status(exp, run) is None  # Running is the Run's to show
    done = step_run(run, Observed(AttemptState.EXITED, exit_code=0), HANDLE, NOW).status
    ended = run.model_copy(update={"status": done})
    status = experiment_status(exp, ended)
    assert status is not None and (status.phase, status.runs) == ("Succeeded", ["train"])
    assert experiment_status(exp.model_copy(update={"status": status}), ended) is None
    gone = experiment_status(exp.model_copy(update={"status": status}), None)
    assert gone is not None and (gone.phase, gone.reason) == ("Succeeded", Reason.RUN_DELETED)


def test_launch_spec_carries_the_run() -> None:
    spec = launch_spec(stored_run(resources={"cpu": "500m", "memory": "1Gi"}), 2, "http://runyard:8000")
    assert spec.argv == ["/bin/sh", "-c", "python train.py"] and spec.attempt == 2
    assert (spec.cpu, spec.memory) == (0.5, 1 << 30)
    assert spec.env["RUNYARD_API_URL"] == "http://runyard:8000" and spec.env["RUNYARD_RUN_UID"] == "r-1"


def test_a_pod_seen_then_gone_before_it_ran_is_process_lost_not_relaunched() -> None:
    step = step_run(stored_run(), Observed(AttemptState.LOST, message="pod deleted"), HANDLE, NOW)
    assert step.launch is None and step.status is not None
    assert (step.status.phase, step.status.reason) == (Phase.FAILED, Reason.PROCESS_LOST)


def test_a_refused_launch_fails_the_attempt_per_the_retry_policy() -> None:
    step = launch_failed(stored_run(), "could not create pod train-1: forbidden", NOW)
    assert step.status is not None and (step.status.phase, step.status.reason) == (
        Phase.FAILED,
        "LaunchFailed",
    )
    retried = launch_failed(stored_run(retryPolicy={"maxRetries": 1}), "forbidden", NOW)
    assert retried.status is not None and retried.status.phase == Phase.QUEUED
    assert [a.attempt for a in retried.status.attempts] == [1]


def test_an_experiment_whose_run_was_deleted_while_running_is_cancelled_not_run_again() -> None:
    status = experiment_status(experiment(), None, had_run=True)
    assert status is not None and (status.phase, status.reason, status.runs) == (
        "Cancelled",
        "RunDeleted",
        ["train"],
    )
    assert experiment_status(experiment(), None) is None  # never had one: the operator creates it


def test_a_tracking_only_run_is_never_launched_and_a_stop_cancels_it() -> None:
    run = Run(metadata=ObjectMeta(name="nb", project="vision", uid="r-2"), spec={"trackingOnly": True})
    assert step_run(run, None, HANDLE, NOW) == RunStep()  # nothing: no pod, no write
    run.spec.stopRequested = True
    step = step_run(run, None, HANDLE, NOW)
    assert step.launch is None and step.status is not None and step.status.phase == Phase.CANCELLED


def test_an_image_that_cannot_be_pulled_is_said_but_is_not_unschedulable() -> None:
    obs = Observed(AttemptState.STARTING, message="main: ErrImagePull: pull access denied")
    step = step_run(stored_run(), obs, HANDLE, NOW)
    assert step.status is not None and (step.status.phase, step.status.reason) == (
        Phase.STARTING,
        "Launching",
    )
    assert step.events == [("Launching", "main: ErrImagePull: pull access denied")]


def test_a_pod_past_its_deadline_is_a_timeout() -> None:
    """The runtime's word for a pod Kubernetes stopped at activeDeadlineSeconds (the run's timeoutSeconds)."""
    message = "stopped by Kubernetes: the pod's activeDeadlineSeconds passed"
    obs = Observed(AttemptState.EXITED, exit_code=137, message=message)
    step = step_run(running(stored_run(timeoutSeconds=60)), obs, HANDLE, NOW)
    assert step.status is not None and (step.status.phase, step.status.reason) == (
        Phase.FAILED,
        "DeadlineExceeded",
    )
