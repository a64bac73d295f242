"""A Job's Run on a cluster is run by the Operator like any other (it runs Runs owned by Jobs), and its end
flows back into the Job's status: lastRun, lastSuccessfulTime, no run active.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; the module runs unchanged against a real cluster when KUBECONFIG names one,
but this test plays the kubelet, so it skips there."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.kube_jobs.harness import Clock, View, controller
from tests.kube_operator.harness import Kubelet, operator, wait_for

from runyard.runtime.kubernetes.pods import pod_name


def test_the_operator_runs_a_job_run_and_the_job_shows_its_end(kube, namespace, tmp_path):
    if kube.emulator is None:
        pytest.skip("plays the kubelet: only against the emulator")
    view, kubelet = View(kube, namespace), Kubelet(kube.api_client)
    clock = Clock(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))
    with operator(kube, namespace, tmp_path), controller(kube, namespace, clock) as ctl:
        view.apply_job("etl", schedule="*/5 * * * *")
        view.wait_status("etl", lambda j: j.status.scheduleFrom is not None)
        clock.t = datetime(2026, 3, 2, 10, 5, 3, tzinfo=UTC)
        ctl.wake()
        (run,) = view.wait_runs("etl", 1)
        pod = pod_name(run.metadata.name, 1)
        wait_for(
            "the run's pod",
            lambda: pod in [p.metadata.name for p in view.core.list_namespaced_pod(namespace).items],
        )
        kubelet.running(namespace, pod)
        kubelet.exited(namespace, pod, 0)
        st = view.wait_status("etl", lambda j: j.status.lastRun is not None).status
        assert st.lastRun is not None
        assert (st.lastRun["name"], st.lastRun["phase"], st.lastRun["trigger"]) == (
            run.metadata.name,
            "Succeeded",
            "schedule",
        )
        assert st.active == [] and st.phase == "Scheduled" and st.lastSuccessfulTime is not None
