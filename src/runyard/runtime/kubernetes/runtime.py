"""KubernetesRuntime: each attempt of a Run is a Pod (pods.pod_manifest) in the project's namespace.

The pod is the attempt's whole state: its handle names it, and observe, stop and cleanup act on it through
the API, so any operator replica can pick an attempt up. Logs are the exception: Kubernetes drops a pod's
log with the pod, so what read_logs reads is appended to a file under `logs_dir` (the local runtime's
output.log format) and served from there once the pod is gone.

stop does not delete the pod: it lowers the pod's activeDeadlineSeconds to 1, so the kubelet stops the
containers (SIGTERM, SIGKILL after the pod's terminationGracePeriodSeconds, the run's stop grace) and
records their exit, which observe then reports as for any exit. A pod not yet on a node has nothing to
stop, and a stop without grace wants no exit status: those are deleted. A pod deleted from under its run
is LOST ("pod deleted").
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runyard.core.clock import now
from runyard.core.errors import Conflict, Invalid, NotFound, RunyardError
from runyard.kube.api import CallCounter, translated
from runyard.runtime.base import (
    AttemptState,
    Handle,
    LaunchError,
    LaunchSpec,
    LogChunk,
    Observed,
    Runtime,
)
from runyard.runtime.kubernetes import pods
from runyard.runtime.local.runtime import read_log_chunk

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

LOST_MESSAGE = "pod deleted"
_STARTING_REASONS = ("ContainerCreating", "PodInitializing")  # waiting, but nothing is wrong


@dataclass
class RuntimeOptions:
    """What a cluster's runs share. `own_pods`: pods are owned by their Run (the Run is a custom resource
    of the cluster: deleting it, or the Experiment that owns it, deletes its pods); off when Runs live
    elsewhere, as the garbage collector would delete pods whose owner it cannot find. `token_secrets`: the
    run's token goes in a Secret (owned likewise) instead of the pod's spec. `service_account`: what runs
    act as on the cluster (none by default: no Kubernetes credential in a run's pod)."""

    image: str
    server_url: str
    env_cache: pods.EnvCache | None = None
    own_pods: bool = True
    token_secrets: bool = False
    service_account: str | None = None


class KubernetesRuntime(Runtime):
    kind = "kubernetes"

    def __init__(
        self,
        api_client: ApiClient,
        options: RuntimeOptions,
        logs_dir: Path,
        namespace_for: Callable[[str], str] | None = None,
        locks: Callable[[LaunchSpec], str | None] | None = None,
        calls: CallCounter | None = None,
    ) -> None:
        """`namespace_for(project)`: a project's namespace (the project's name by default). `locks(spec)`:
        the recorded lock of the environment a launch asks for (None: the image's Python)."""
        from kubernetes import client

        self.options = options
        self.logs_dir = Path(logs_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._namespace_for = namespace_for or (lambda project: project)
        self._locks = locks
        if calls is not None:
            calls.instrument(api_client)
        self.core = client.CoreV1Api(api_client)

    # -- launching ---------------------------------------------------------------------------------------
    def manifest(self, spec: LaunchSpec) -> dict[str, Any]:
        """The pod launch(spec) creates."""
        o = self.options
        owner = {"kind": "Run", "name": spec.name, "uid": spec.run_uid} if o.own_pods else None
        return pods.pod_manifest(
            spec,
            image=o.image,
            server_url=o.server_url,
            namespace=self._namespace_for(spec.project),
            owner=owner,
            run_token_secret=self._secret_name(spec) if o.token_secrets else None,
            env_lock=self._locks(spec) if self._locks else None,
            env_cache=o.env_cache,
            service_account=o.service_account,
        )

    def launch(self, spec: LaunchSpec) -> Handle:
        """Create the pod; one that exists already (an earlier launch of this attempt) is the attempt's."""
        if not spec.argv:
            raise LaunchError("nothing to run: the command is empty")
        pod = self.manifest(spec)
        ns = pod["metadata"]["namespace"]
        try:
            if self.options.token_secrets:
                self._create_secret(spec, ns, pod["metadata"].get("ownerReferences"))
            with translated():
                self.core.create_namespaced_pod(ns, pod, _preload_content=False)
        except Conflict:  # AlreadyExists: launched before, unless an earlier run of that name left it
            self._check_same_run(spec, ns, pod["metadata"]["name"])
        except RunyardError as exc:
            raise LaunchError(f"could not create pod {pod['metadata']['name']}: {exc}") from exc
        return _handle(ns, pod["metadata"]["name"], spec.run_uid, spec.attempt)

    def _check_same_run(self, spec: LaunchSpec, ns: str, name: str) -> None:
        found = self._read(_handle(ns, name, spec.run_uid, spec.attempt))
        labels = ((found or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(pods.RUN_UID_LABEL) != spec.run_uid:
            raise LaunchError(
                f"pod {name} of an earlier run named {spec.name} is still there (being deleted?); try again"
            )

    def _secret_name(self, spec: LaunchSpec) -> str:
        return pods.dns_name(pods.pod_name(spec.name, spec.attempt), "-token", 253)

    def _create_secret(self, spec: LaunchSpec, ns: str, owners: list[dict[str, Any]] | None) -> None:
        token = spec.env.get("RUNYARD_TOKEN")
        if token is None:
            raise LaunchError("token_secrets is set, but the launch has no RUNYARD_TOKEN")
        secret = pods.token_secret_manifest(self._secret_name(spec), ns, pods.run_labels(spec), owners, token)
        with contextlib.suppress(Conflict), translated():
            self.core.create_namespaced_secret(ns, secret, _preload_content=False)

    def find_launched(self, run_uid: str, attempt: int) -> Handle | None:
        selector = f"{pods.RUN_UID_LABEL}={run_uid},{pods.ATTEMPT_LABEL}={int(attempt)}"
        with translated():
            found = _json(
                self.core.list_pod_for_all_namespaces(label_selector=selector, _preload_content=False)
            )
        for pod in found.get("items") or []:
            meta = pod["metadata"]
            return _handle(meta["namespace"], meta["name"], run_uid, attempt)
        return None

    # -- observing ---------------------------------------------------------------------------------------
    def _read(self, handle: Handle) -> dict[str, Any] | None:
        try:
            with translated():
                return _json(
                    self.core.read_namespaced_pod(handle["pod"], handle["namespace"], _preload_content=False)
                )
        except NotFound:
            return None

    def observe(self, handle: Handle) -> Observed:
        pod = self._read(handle)
        return observed(pod) if pod is not None else Observed(state=AttemptState.LOST, message=LOST_MESSAGE)

    # -- stopping and cleaning up ------------------------------------------------------------------------
    def stop(self, handle: Handle, grace: float) -> None:
        """Have the kubelet stop the pod (its exit recorded); delete what has not reached a node."""
        patch = {
            "metadata": {"annotations": {pods.STOP_ANNOTATION: f"{grace:g}"}},
            "spec": {"activeDeadlineSeconds": 1},
        }
        try:
            if grace > 0:
                with translated():
                    pod = _json(
                        self.core.patch_namespaced_pod(
                            handle["pod"],
                            handle["namespace"],
                            patch,
                            _content_type="application/merge-patch+json",
                            _preload_content=False,
                        )
                    )
                if (pod.get("spec") or {}).get("nodeName"):
                    return
            self._delete(handle, grace)
        except (NotFound, Invalid):  # gone already, or ended (a finished pod's deadline cannot change)
            return

    def _delete(self, handle: Handle, grace: float) -> None:
        with contextlib.suppress(NotFound), translated():
            self.core.delete_namespaced_pod(
                handle["pod"],
                handle["namespace"],
                grace_period_seconds=math.ceil(grace),
                _preload_content=False,
            )

    def cleanup(self, handle: Handle) -> None:
        """Delete the pod (and its token Secret), then the kept log."""
        self._delete(handle, 0)
        if self.options.token_secrets:
            with contextlib.suppress(NotFound), translated():
                name = pods.dns_name(handle["pod"], "-token", 253)
                self.core.delete_namespaced_secret(name, handle["namespace"], _preload_content=False)
        for path in self._log_paths(handle):
            path.unlink(missing_ok=True)
            path.with_suffix(".cursor").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._log_paths(handle)[0].parent.rmdir()

    # -- logs ----------------------------------------------------------------------------------------------
    def _log_paths(self, handle: Handle) -> tuple[Path, Path]:
        """The kept log, and its marker: complete, the pod will write no more."""
        folder = self.logs_dir / str(handle["run_uid"])
        name = f"attempt-{int(handle['attempt'])}"
        return folder / f"{name}.log", folder / f"{name}.done"

    def read_logs(self, handle: Handle, offset: int = 0, max_bytes: int = 1 << 20) -> LogChunk:
        log, done = self._log_paths(handle)
        if not done.exists():
            self._sync_log(handle, log, done)
        return read_log_chunk(log, offset, max_bytes, done.exists())

    def _sync_log(self, handle: Handle, log: Path, done: Path) -> None:
        """Append to the kept log the lines the main container wrote since the last look; mark it complete
        once the container has ended (or the pod is gone). Each look asks only for the lines since the last
        one kept (a window of `since_seconds`, with slack for the node's clock), then drops those it has
        by their timestamps (nanoseconds: one line's, but for lines written within the same one, counted)."""
        pod = self._read(handle)
        ended = pod is None or observed(pod).state in (AttemptState.EXITED, AttemptState.LOST)
        log.parent.mkdir(parents=True, exist_ok=True)
        if pod is not None:
            cursor_path = log.with_suffix(".cursor")
            cursor = _read_cursor(cursor_path)
            window: dict[str, Any] = {}
            if cursor["last"]:
                since = parse_time(cursor["last"]) or now()
                window["since_seconds"] = max(1, math.ceil((now() - since).total_seconds()) + CLOCK_SLACK)
            try:
                with translated():
                    reply = self.core.read_namespaced_pod_log(
                        handle["pod"], handle["namespace"], container=pods.MAIN, timestamps=True,
                        _preload_content=False, **window,
                    )  # fmt: skip
                text = reply.data.decode("utf-8", "replace")
            except RunyardError:  # 400: not started yet; gone meanwhile: the next look knows
                text = ""
            fresh, cursor = lines_after(text.splitlines(), cursor)
            if fresh:
                with open(log, "ab") as f:
                    f.write("".join(_log_line(line) for line in fresh).encode())
                cursor_path.write_text(json.dumps(cursor))
        if ended:
            done.touch()


CLOCK_SLACK = 300  # seconds: how far a node's clock may run ahead of ours without a line being missed


def _read_cursor(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"last": None, "same": 0}


def _stamp_key(stamp: str) -> str:
    """A kubelet timestamp (RFC 3339, trailing zeros of the nanoseconds trimmed) as a string that sorts."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{frac:0<9}"


def lines_after(lines: list[str], cursor: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The lines not kept yet, and the cursor after them: `last` the newest timestamp kept, `same` how many
    kept lines carry it."""
    last, same = cursor["last"], int(cursor["same"])
    skip = same
    fresh = []
    for line in lines:
        key = _stamp_key(line.partition(" ")[0])
        if last is not None and key < last:
            continue
        if key == last and skip > 0:
            skip -= 1
            continue
        fresh.append(line)
        last, same = key, (same + 1 if key == last else 1)
    return fresh, {"last": last, "same": same}


def _handle(namespace: str, pod: str, run_uid: str, attempt: int) -> Handle:
    return {
        "runtime": "kubernetes",
        "namespace": namespace,
        "pod": pod,
        "run_uid": run_uid,
        "attempt": attempt,
    }


def _json(response: Any) -> dict[str, Any]:
    data = json.loads(response.data)
    return data if isinstance(data, dict) else {}


def _log_line(line: str) -> str:
    """`<RFC 3339 time, ns precision> <text>` (kubectl logs --timestamps) as an output.log line."""
    stamp, _, text = line.partition(" ")
    time = parse_time(stamp) or now()
    return f"{time.isoformat()} stdout {text}\n"


def parse_time(value: str | None) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339, `Z`, up to nanoseconds) as an aware datetime."""
    if not value:
        return None
    head, dot, frac = value.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(f"{head}{dot}{frac[:6]}+00:00" if dot else f"{head}+00:00")
    except ValueError:
        return None


def _statuses(status: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(status.get(key) or [])


def _end_message(status: dict[str, Any], terminated: dict[str, Any], oom: bool) -> str:
    if oom:
        return "killed for going over its memory limit (OOMKilled)"
    if status.get("reason") == "DeadlineExceeded":
        return "stopped by Kubernetes: the pod's activeDeadlineSeconds passed"
    reason = terminated.get("reason") or ""
    return "" if reason in ("", "Completed", "Error") else reason


def _exit_code(terminated: dict[str, Any]) -> int | None:
    signal = terminated.get("signal")
    return -int(signal) if signal else terminated.get("exitCode")


def observed(pod: dict[str, Any]) -> Observed:
    """What a pod says of its attempt (pure: the operator maps pods it watched with it, no read)."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    main = next((c for c in _statuses(status, "containerStatuses") if c.get("name") == pods.MAIN), {})
    state = main.get("state") or {}
    limits = _limits(spec)
    sandbox = {"mechanism": "kubernetes-pod", "pod": (pod.get("metadata") or {}).get("name")}
    stopped = pods.STOP_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})
    if terminated := state.get("terminated"):
        oom = terminated.get("reason") == "OOMKilled"
        message = "stopped" if stopped else _end_message(status, terminated, oom)
        return Observed(
            state=AttemptState.EXITED,
            exit_code=_exit_code(terminated),
            started_at=parse_time(terminated.get("startedAt")),
            finished_at=parse_time(terminated.get("finishedAt")),
            message=message,
            limits=limits,
            oom_killed=oom,
            sandbox=sandbox,
        )
    phase = status.get("phase") or "Pending"
    if phase in ("Succeeded", "Failed"):  # ended without the main container's exit
        for init in _statuses(status, "initContainerStatuses"):
            done = (init.get("state") or {}).get("terminated") or {}
            if done.get("exitCode"):
                why = (done.get("message") or done.get("reason") or "").strip()
                step = f"its {init.get('name')} step exited with code {done['exitCode']}"
                return Observed(
                    state=AttemptState.EXITED,
                    message=f"failed to start: {step}" + (f": {why}" if why else ""),
                    finished_at=parse_time(done.get("finishedAt")),
                    limits=limits,
                    sandbox=sandbox,
                )
        why = ": ".join(filter(None, [status.get("reason"), status.get("message")]))
        return Observed(state=AttemptState.LOST, message=f"the pod ended ({why or phase})", sandbox=sandbox)
    if running := state.get("running"):
        return Observed(
            state=AttemptState.RUNNING,
            started_at=parse_time(running.get("startedAt")),
            limits=limits,
            sandbox=sandbox,
            message="the node is not reporting" if phase == "Unknown" else "",
        )
    return _starting(status, limits)


def _starting(status: dict[str, Any], limits: dict[str, Any]) -> Observed:
    """Pending: why, when something is wrong (unschedulable, an image that cannot be pulled); progress
    while an init step runs (fetching files, installing the environment), so the launch timeout waits."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = cond.get("reason") or "Unschedulable"
            return Observed(
                state=AttemptState.STARTING, message=f"{reason}: {cond.get('message', '')}".strip()
            )
    progress = None
    for c in _statuses(status, "initContainerStatuses") + _statuses(status, "containerStatuses"):
        state = c.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in _STARTING_REASONS:
            text = f"{c.get('name')}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
            return Observed(state=AttemptState.STARTING, message=text, limits=limits)
        if "running" in state:  # an init step at work
            progress = now()
    return Observed(state=AttemptState.STARTING, progress_at=progress, limits=limits)


def _limits(spec: dict[str, Any]) -> dict[str, Any]:
    main: dict[str, Any] = next((c for c in spec.get("containers") or [] if c.get("name") == pods.MAIN), {})
    limits = (main.get("resources") or {}).get("limits") or {}
    return {"mechanism": "kubernetes", "enforced": bool(limits), **limits}
