"""Jobs on a cluster fire after their dependencies: once every job named in dependsOn has a Run that
succeeded since this job last fired after them, and once only for the same upstream Runs.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; the module runs unchanged against a real cluster when KUBECONFIG names one.
Run ends are written by the test as the Operator writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.kube_jobs.harness import Clock, View, controller, settle
from tests.kube_operator.harness import wait_for

from runyard.controller.jobs.decide import dependency_key
from runyard.controller.kube.jobs import DEPENDENCY_ANNOTATION, dependency_run_name
from runyard.core.resources import Job, Run
from runyard.store.jobs import TRIGGER_ANNOTATION, Fire, fire_run


def run_of(view: View, job: str, name: str, phase: str, finished: datetime) -> Run:
    """A Run of `job` (as a manual trigger makes it) that ended as `phase`."""
    run = view.resources.create(fire_run(Fire(view.job(job), "manual", f"manual:{name}"), name))
    view.finish(name, phase, finished)
    assert isinstance(run, Run)
    return run


def test_a_job_fires_once_after_all_its_dependencies_succeeded(kube, namespace):
    view, clock = View(kube, namespace), Clock(datetime.now(UTC))
    later = datetime.now(UTC) + timedelta(minutes=1)
    with controller(kube, namespace, clock) as ctl:
        for name in ("train", "evaluate"):
            view.apply_job(name)
        view.apply_job("report", dependsOn=["train", "evaluate"], concurrencyPolicy="Allow")
        view.wait_status("report", lambda j: j.status.phase == "Scheduled")
        train = run_of(view, "train", "train-1", "Succeeded", later)
        run_of(view, "evaluate", "evaluate-1", "Failed", later)
        settle(ctl)
        assert view.runs("report") == []  # evaluate has not succeeded
        evaluate = run_of(view, "evaluate", "evaluate-2", "Succeeded", later + timedelta(minutes=1))
        (run,) = view.wait_runs("report", 1)
        assert run.metadata.name == dependency_run_name("report", dependency_key([train.uid, evaluate.uid]))
        assert run.metadata.annotations[TRIGGER_ANNOTATION] == "dependency"
        job = view.wait_status("report", lambda j: DEPENDENCY_ANNOTATION in j.metadata.annotations)
        assert job.metadata.annotations[DEPENDENCY_ANNOTATION] == (later + timedelta(minutes=1)).isoformat()
        settle(ctl)
        assert len(view.runs("report")) == 1  # the same upstream runs fire it once
        run_of(view, "train", "train-2", "Succeeded", later + timedelta(minutes=2))
        settle(ctl)
        assert len(view.runs("report")) == 1  # evaluate has not succeeded again since
        run_of(view, "evaluate", "evaluate-3", "Succeeded", later + timedelta(minutes=3))
        assert len(view.wait_runs("report", 2)) == 2
        wait_for("the count of fires", lambda: ctl.fired == 2)


def test_a_suspended_job_does_not_fire_on_its_dependencies(kube, namespace):
    view, clock = View(kube, namespace), Clock(datetime.now(UTC))
    with controller(kube, namespace, clock) as ctl:
        view.apply_job("upstream")
        view.apply_job("downstream", dependsOn=["upstream"], suspend=True)
        view.wait_status("downstream", lambda j: j.status.phase == "Suspended")
        run_of(view, "upstream", "upstream-1", "Succeeded", datetime.now(UTC) + timedelta(minutes=1))
        settle(ctl)
        assert view.runs("downstream") == []


def test_dependencies_ready_says_which_job_is_missing_until_it_exists(kube, namespace):
    view, clock = View(kube, namespace), Clock(datetime.now(UTC))
    with controller(kube, namespace, clock):
        view.apply_job("publish", dependsOn=["build"])

        def ready(j: Job) -> str | None:
            return next((c.status for c in j.status.conditions if c.type == "DependenciesReady"), None)

        job = view.wait_status("publish", lambda j: ready(j) == "False")
        assert "'build' not found" in job.status.conditions[0].message
        assert view.events("DependenciesNotReady")
        view.apply_job("build")
        view.wait_status("publish", lambda j: ready(j) == "True")
