#!/usr/bin/env python3
"""The operator at scale: N Experiments to Succeeded on Kubernetes, against the local runtime's figures.

  kubernetes  The operator (`runyard.controller.kube`, leading through its Lease) against the test API server
              (kmock's KubernetesEmulator, extended: tests/kube/emulator.py; no real kube-apiserver runs
              here) in a child process, with a fake kubelet there (a thread watching pods) marking each
              pod Running, then Succeeded --pod-seconds later. N Experiments are created at once, as
              kubectl would, by 8 threads.
              Reported: Experiments (and objects: Experiments, Runs, Pods) taken to Succeeded per second,
              the operator's API calls per Run by verb (from its instrumented client: the Lease's renewals
              use another and are not counted; the project's quota and accounts, applied once, are), the
              shared list/watch calls in all, and relists (must be 0: the watches stay healthy). The
              emulator (Python) serves some 60-100 requests a second on a 2-core box, so the throughput
              here is mostly its own; calls per Run are the operator's figure.
  local       The same N Experiments on a real `runyard server` (SQLite, local runtime) running `true`:
              Experiments per second, and store writes per Run (each write bumps an object's
              resourceVersion: the Run's, plus its Experiment's after the user's create).
Targets: <= 5 API calls per Run from creation to Succeeded; 0 relists.

Run:  python bench/k8s.py [--experiments 200] [--pod-seconds 0.5] [--skip-local] [--out results.json]
"""

from __future__ import annotations

import argparse
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.kube.cluster import Cluster, EmulatorThread, emulator_client  # noqa: E402
from tests.kube_operator.harness import Kubelet, experiment, operator  # noqa: E402
from tests.support import ServerProcess, emit_json  # noqa: E402

NAMESPACE = "bench"
ENDED = ("Succeeded", "Failed")
VERBS = ("create", "patch", "replace", "get", "delete", "list", "watch")


class FakeKubelet:
    """Marks each new pod Running at once and Succeeded `seconds` later, from its own watch of the pods."""

    def __init__(self, url: str, seconds: float):
        from kubernetes import client

        self.api_client = emulator_client(url)
        self.kubelet = Kubelet(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.seconds = seconds
        self.due: queue.Queue[tuple[float, str]] = queue.Queue()
        for f in (self._watch, self._finish):
            threading.Thread(target=f, daemon=True).start()

    def _watch(self) -> None:
        from kubernetes import watch

        for event in watch.Watch().stream(self.core.list_namespaced_pod, NAMESPACE):
            if event["type"] == "ADDED":
                name = event["object"].metadata.name
                self.kubelet.running(NAMESPACE, name)
                self.due.put((time.monotonic() + self.seconds, name))

    def _finish(self) -> None:
        while True:
            at, name = self.due.get()
            time.sleep(max(0.0, at - time.monotonic()))
            self.kubelet.exited(NAMESPACE, name, 0)


def serve(pod_seconds: float) -> None:
    """The child process: the emulator and the fake kubelet, apart from the operator's process (as an API
    server and a node are), until stdin closes."""
    from kubernetes import client

    emulator = EmulatorThread().start()
    client.CoreV1Api(emulator_client(emulator.url)).create_namespace({"metadata": {"name": NAMESPACE}})
    FakeKubelet(emulator.url, pod_seconds)
    print(emulator.url, flush=True)
    sys.stdin.read()


@contextmanager
def served_cluster(pod_seconds: float) -> Iterator[Cluster]:
    argv = [sys.executable, __file__, "--serve", "--pod-seconds", str(pod_seconds)]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    url = child.stdout.readline().strip()
    api_client = emulator_client(url)
    try:
        yield Cluster(api_client, None, url)
    finally:
        api_client.close()
        child.stdin.close()
        child.wait(30)


def kubernetes_figures(n: int, pod_seconds: float) -> dict[str, Any]:
    from kubernetes import client

    with (
        served_cluster(pod_seconds) as kube,
        tempfile.TemporaryDirectory() as tmp,
        operator(kube, NAMESPACE, Path(tmp)) as op,
    ):
        deadline = time.monotonic() + 10
        while not op.elector.is_leader() and time.monotonic() < deadline:
            time.sleep(0.02)
        before, cpu0 = op.calls.counts(), _cpu()
        custom = client.CustomObjectsApi(kube.api_client)

        def create(i: int) -> None:
            body = experiment(f"exp-{i}", command=["true"])
            custom.create_namespaced_custom_object("runyard.dev", "v1", NAMESPACE, "experiments", body)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n)))
        created = time.perf_counter() - t0
        while True:  # the bench's own reads, through its own client: not the operator's calls
            items = custom.list_namespaced_custom_object("runyard.dev", "v1", NAMESPACE, "experiments")
            done = [e for e in items["items"] if (e.get("status") or {}).get("phase") in ENDED]
            if len(done) == n or time.perf_counter() - t0 > 300:
                break
            time.sleep(0.25)
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        after = op.calls.counts()
        failed = sum(1 for e in done if e["status"]["phase"] != "Succeeded")
        counts = {v: after.get(v, 0) - before.get(v, 0) for v in VERBS}
        per_run = {v: round(counts[v] / n, 3) for v in VERBS if v not in ("list", "watch")}
        pods = len(client.CoreV1Api(kube.api_client).list_namespaced_pod(NAMESPACE).items)
        return {
            "experiments": n,
            "succeeded": len(done) - failed,
            "failed": failed,
            "pods": pods,
            "create_seconds": round(created, 3),
            "elapsed_seconds": round(elapsed, 3),
            "experiments_per_second": round(n / elapsed, 1),
            "objects_per_second": round(3 * n / elapsed, 1),
            "writes_per_second": round(op.operator.reconciled / elapsed, 1),
            # this process: the operator, and the bench's creates and polls (the emulator is apart)
            "operator_process_cpu_ms_per_run": round(cpu / n * 1000, 2),
            "api_calls_per_run": {**per_run, "total": round(sum(per_run.values()), 3)},
            "shared_calls": {"list": counts["list"], "watch": counts["watch"]},
            "relists": op.operator.relists,
            "fake_kubelet_pod_seconds": pod_seconds,
        }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def local_figures(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="runyard-bench-") as home:
        srv = ServerProcess(Path(home)).start()
        try:
            api = srv.api()
            t0 = time.perf_counter()
            for i in range(n):
                doc = {
                    "apiVersion": "runyard.dev/v1",
                    "kind": "Experiment",
                    "metadata": {"name": f"exp-{i}"},
                    "spec": {"command": ["true"]},
                }
                r = api.post("/experiments", json=doc)
                assert r.status_code == 201, r.text
            while True:
                items = api.get("/experiments", params={"limit": 1000}).json()["items"]
                ended = [e for e in items if (e.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
                if len(ended) == n or time.perf_counter() - t0 > 600:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            runs = api.get("/runs", params={"limit": 1000}).json()["items"]
            writes = sum(r["metadata"]["resourceVersion"] for r in runs)
            writes += sum(e["metadata"]["resourceVersion"] - 1 for e in items)
            return {
                "experiments": n,
                "succeeded": sum(1 for e in ended if e["status"]["phase"] == "Succeeded"),
                "elapsed_seconds": round(elapsed, 3),
                "experiments_per_second": round(n / elapsed, 1),
                "store_writes_per_run": round(writes / n, 2),
                "command": "true (a real process per run)",
            }
        finally:
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=200)
    ap.add_argument("--pod-seconds", type=float, default=0.5, help="how long the fake kubelet runs a pod")
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.serve:
        serve(args.pod_seconds)
        return
    kube = kubernetes_figures(args.experiments, args.pod_seconds)
    result: dict[str, Any] = {"benchmark": "k8s", "kubernetes": kube}
    if not args.skip_local:
        result["local"] = local_figures(args.experiments)
    result["targets"] = {
        "api_calls_per_run_le_5": kube["api_calls_per_run"]["total"] <= 5,
        "no_relists": kube["relists"] == 0,
        "all_succeeded": kube["succeeded"] == args.experiments,
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
