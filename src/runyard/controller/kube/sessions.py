"""Sessions on a cluster: a Session becomes a Pod running JupyterLab, a ClusterIP Service in front of it, a
PersistentVolumeClaim as its work directory (kept across stops, so files survive; gone with the Session)
and a Secret holding its Jupyter token, all owned by the Session, so deleting it deletes them.

The phases are the local controller's (controller/sessions.py): Pending until the pod runs, Starting until
it is Ready (Jupyter answers), Running, Stopping while the pod goes, Stopped (spec.stopped: the pod is
deleted, the claim kept), Failed when the pod ends unasked: it is not restarted in a loop; a new start is a
spec change or RESTART_ANNOTATION set after the pod was made (`runyard session start`). Idleness and
lifetime follow the local pure rules (reclaim, next_look) on status.lastActivity, which on a cluster only
the server's proxy can write, measured with an injectable clock.

The token is random, not derived from the server's session key as locally: the pod reads it from the
Secret (never in the pod's spec), and the server's proxy reads the Secret named by TOKEN_SECRET_ANNOTATION
(key TOKEN_KEY) to forward to the Service `service_name(session)` on `status.port`.

It runs beside the Operator in `runyard operator` and shares its lifecycle (base.KindController): its
caches are Sessions and their pods.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, Unpack

from runyard.controller.kube.base import Cluster, Elector, KindController, ProjectObjects, Work
from runyard.controller.kube.informer import PodSource
from runyard.controller.kube.tokens import Tokens, ensure_token_secret, revoke_deleted
from runyard.controller.kube.tokens import secret_name as runyard_token_secret
from runyard.controller.sessions import RESTART_ANNOTATION, STOP_GRACE, base_url, next_look, reclaim
from runyard.core.clock import aware, now
from runyard.core.errors import Conflict, NotFound
from runyard.core.phases import Reason
from runyard.core.resources import Session, SessionStatus
from runyard.runtime.base import AttemptState, LaunchSpec
from runyard.runtime.kubernetes import pods
from runyard.runtime.kubernetes.runtime import observed, parse_time

log = logging.getLogger(__name__)

SELECTOR = "app.kubernetes.io/managed-by=runyard,runyard.dev/kind=Session"
COMMAND = ["python", "-m", "runyard.sessions.jupyter"]  # the image's Python, where JupyterLab is installed
PORT = pods.SESSION_PORT
LISTEN_FD = 5
WORKDIR_SIZE = "10Gi"  # a session's claim (its spec names no size)
TOKEN_KEY = pods.TOKEN_KEY
TOKEN_SECRET_ANNOTATION = pods.SESSION_TOKEN_ANNOTATION


def service_name(session: str) -> str:
    return pods.dns_name(session)


def claim_name(session: str) -> str:
    return pods.dns_name(session, "-work")


def secret_name(session: str) -> str:
    return pods.dns_name(session, "-jupyter")


def _labels(project: str, session: str) -> dict[str, str]:
    return {
        pods.PROJECT_LABEL: project,
        pods.KIND_LABEL: "Session",
        pods.SESSION_LABEL: session,
        **pods.MANAGED_BY,
    }


def _metadata(name: str, session: Session) -> dict[str, Any]:
    m = session.metadata
    return {
        "name": name,
        "namespace": m.project,
        "labels": _labels(m.project, m.name),
        "ownerReferences": [pods.owner_reference({"kind": "Session", "name": m.name, "uid": session.uid})],
    }


def claim_manifest(session: Session, size: str = WORKDIR_SIZE) -> dict[str, Any]:
    """The session's work directory, kept while the Session exists (the default storage class)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(claim_name(session.metadata.name), session),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def token_secret_manifest(session: Session) -> dict[str, Any]:
    """A fresh random Jupyter token; made once per Session, so restarts keep it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(secret_name(session.metadata.name), session),
        "data": {TOKEN_KEY: base64.b64encode(secrets.token_hex(32).encode()).decode()},
    }


def session_pod(
    session: Session,
    pod: str,
    *,
    image: str,
    server_url: str,
    env_lock: str | None = None,
    env_cache: pods.EnvCache | None = None,
    run_token_secret: str | None = None,
) -> dict[str, Any]:
    """The pod of one start: session_pod_manifest, named `pod`, labelled as a Session's (not a Run's: the
    Operator's pod watch leaves it alone), its Jupyter token from the Session's Secret and its runyard token
    (to fetch the snapshot and report to tracking) from `run_token_secret`."""
    m, spec = session.metadata, session.spec
    env = {
        "RUNYARD_SESSION_BASE_URL": base_url(m.project, m.name),
        "RUNYARD_SESSION_EDITOR": spec.editor,
        "RUNYARD_SESSION_LISTEN_FD": str(LISTEN_FD),
        "RUNYARD_SESSION": m.name,
        "RUNYARD_PROJECT": m.project,
        "RUNYARD_API_URL": server_url,
        "MLFLOW_TRACKING_URI": server_url,
        "PYTHONUNBUFFERED": "1",
    }
    if env_lock is not None:
        env["RUNYARD_SESSION_KERNEL_PYTHON"] = f"{pods.env_dir(env_lock)}/bin/python"
    launch = LaunchSpec(
        run_uid=session.uid,
        project=m.project,
        name=m.name,
        attempt=0,
        argv=list(COMMAND),
        env=env,
        snapshot=spec.snapshot,
        cpu=spec.resources.cpu_cores,
        memory=spec.resources.memory_bytes,
        gpu=spec.resources.gpu,
        stop_grace=STOP_GRACE,
        listen_fd=LISTEN_FD,
    )
    owner = {"kind": "Session", "name": m.name, "uid": session.uid}
    manifest = pods.session_pod_manifest(
        launch,
        session=m.name,
        image=image,
        server_url=server_url,
        namespace=m.project,
        owner=owner,
        env_lock=env_lock,
        env_cache=env_cache,
        run_token_secret=run_token_secret,
        workspace_claim=claim_name(m.name),
        port=PORT,
    )
    meta = manifest["metadata"]
    meta["name"] = pod
    meta["labels"] = _labels(m.project, m.name)
    meta["annotations"] = {}
    token = {"secretKeyRef": {"name": secret_name(m.name), "key": TOKEN_KEY}}
    manifest["spec"]["containers"][0]["env"].append({"name": "JUPYTER_TOKEN", "valueFrom": token})
    return manifest


def ended(pod: dict[str, Any]) -> bool:
    return observed(pod).state in (AttemptState.EXITED, AttemptState.LOST)


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return True
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(c.get("name") == pods.MAIN and c.get("ready") for c in statuses)


def scheduled(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    on_node = any(c.get("type") == "PodScheduled" and c.get("status") == "True" for c in conditions)
    return on_node or bool((pod.get("spec") or {}).get("nodeName"))


def start_wanted(session: Session, pod: dict[str, Any]) -> bool:
    """A new start after `pod` ended: the spec changed since, or a start was asked for after it was made."""
    if session.status.observedGeneration != session.metadata.generation:
        return True
    try:  # ISO 8601 as `runyard session start` writes it, any offset
        asked = aware(datetime.fromisoformat(session.metadata.annotations.get(RESTART_ANNOTATION) or ""))
    except ValueError:
        return False
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return bool(asked and created and asked > created)


def _changed(old: SessionStatus, new: SessionStatus) -> dict[str, Any]:
    """The fields of `new` that differ from `old`, as a merge patch: a field this controller did not change
    is not sent, so the proxy's newer lastActivity is never overwritten with a stale copy."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return {k: v for k, v in after.items() if before.get(k) != v}


class SessionController(KindController[Work]):
    kinds = ("Session",)
    thread_prefix = "sessions"

    def __init__(
        self,
        resources: Any,
        elector: Elector,
        *,
        image: str,
        server_url: str,
        public_url: str | None = None,
        locks: Callable[[Session], str | None] | None = None,
        env_cache: pods.EnvCache | None = None,
        clock: Callable[[], datetime] = now,
        project_objects: bool = True,
        tokens: Tokens | None = None,
        **cluster: Unpack[Cluster],
    ):
        """`public_url`: what a browser reaches the server at (status.url starts with it; the server's own
        URL by default). `locks(session)`: the recorded lock of its environment (None: the image's
        Python). `clock`: what idleness and lifetime are measured with. `project_objects`: a project's
        namespace gets what it needs (quota, limits) before its first session starts, as the Operator does.
        `tokens`: where a Session's runyard token is issued (None: its pod gets none)."""
        from kubernetes import client

        super().__init__(resources, elector, image=image, server_url=server_url, **cluster)
        api_client, calls = self.api_client, self.calls
        if calls is not None:
            calls.instrument(api_client)
        self.core = client.CoreV1Api(api_client)
        self.public_url = (public_url or server_url).rstrip("/")
        self.locks, self.env_cache, self.clock, self.tokens = locks, env_cache, clock, tokens
        self.projects = ProjectObjects(api_client, project_objects)
        self._made: set[str] = set()  # Sessions (uids) whose claim, Service and Secret exist
        for scope in self.scopes:
            self._watch_resources(Session, scope, self._on_session)
            source = PodSource(api_client, scope, SELECTOR)
            self._watch_objects("Pod", scope, "session-pods", source, self._on_session_pod)

    def cached(self, namespace: str, name: str) -> Session | None:
        """The Session as this controller last saw it (its watch's copy)."""
        return self._cache("Session", namespace).get((namespace, name))

    def _on_session(self, type_: str, session: Session) -> None:
        if type_ == "DELETED":
            with self._lock:
                self._made.discard(session.uid)
            revoke_deleted(self.tokens, session)
            return
        self.queue.add(("Session", session.metadata.project, session.metadata.name))

    def _on_session_pod(self, type_: str, pod: dict) -> None:
        m = pod["metadata"]
        session = (m.get("labels") or {}).get(pods.SESSION_LABEL)
        if session:
            self.queue.add(("Session", m["namespace"], session))

    # -- reconcile

    def _reconcile(self, item: Work) -> None:
        _, namespace, name = item
        session = self._cache("Session", namespace).get((namespace, name))
        if session is None or session.metadata.uid is None or session.metadata.deletionTimestamp is not None:
            return  # the garbage collector deletes what it owns
        mine = [p for p in self._cache("Pod", namespace).items() if _owned_by(p, session.uid)]
        st = session.status.model_copy(deep=True)
        current = next((p for p in mine if p["metadata"]["name"] == st.run), None)
        if current is not None and current["metadata"].get("deletionTimestamp") and not session.spec.stopped:
            current = None  # stopped, and started again while its pod terminates: a new pod once it is gone
        if current is None:  # made before its status said so (a write lost, a new leader): adopt it
            live = [p for p in mine if not ended(p) and not p["metadata"].get("deletionTimestamp")]
            current = max(live, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)
            if current is not None:
                st.run, st.runUid = current["metadata"]["name"], current["metadata"].get("uid")
        others = [p for p in mine if p is not current]
        for pod in others:  # from an earlier start: never two Jupyter servers on one claim
            self._delete_pod(pod)
        after: float | None = None
        if session.spec.stopped:
            if current is not None:
                self._delete_pod(current)
            self._stop_state(st, bool(mine))
        elif current is None or (ended(current) and start_wanted(session, current)):
            if current is not None:
                self._delete_pod(current)
            if any(not ended(p) for p in others):
                st.phase, st.reason, st.message = (
                    "Pending",
                    "Starting",
                    "waiting for the previous pod to stop",
                )
            elif self._exists(session):
                self.projects.ensure(namespace)
                session = self._ensure_objects(session)
                st = self._start(session, st)
            else:
                return  # deleted: its watch event is on its way
        elif ended(current):
            if st.phase != "Failed":
                why = observed(current).message or (current.get("status") or {}).get("phase") or "ended"
                st.phase, st.reason = "Failed", _end_reason(current)
                st.message = (
                    f"its pod {current['metadata']['name']} ended unasked ({why}): "
                    f"`runyard session start {session.metadata.name}` starts it again"
                )
                self._warn(session, st.reason, st.message)
        else:
            after = self._running(session, current, st)
        st.observedGeneration = session.metadata.generation
        session = self._write(session, st)
        if st.phase == "Stopping" and st.reason in ("Idle", "MaxLifetime") and not session.spec.stopped:
            self._mark_stopped(session)
        elif after is not None:
            self.queue.add_after(("Session", namespace, name), after)

    def _stop_state(self, st: SessionStatus, pods_left: bool) -> None:
        reclaimed = st.reason in ("Idle", "MaxLifetime")  # its message says why; else the user stopped it
        why = (st.reason or "") if reclaimed else Reason.STOPPED
        said = (st.message or "") if reclaimed else "stopped"
        if pods_left:
            st.phase, st.reason, st.message = "Stopping", why, said if reclaimed else "stopping"
        elif st.phase != "Stopped":
            st.phase, st.reason, st.message = "Stopped", why, f"{said}; its files are kept"

    def _start(self, session: Session, st: SessionStatus) -> SessionStatus:
        m = session.metadata
        name = pods.dns_name(m.name, f"-{secrets.token_hex(3)}")
        lock = self.locks(session) if self.locks is not None else None
        manifest = session_pod(
            session,
            name,
            image=self.image,
            server_url=self.server_url,
            env_lock=lock,
            env_cache=self.env_cache,
            run_token_secret=runyard_token_secret("Session", m.name) if self.tokens is not None else None,
        )
        created = self._create("pod", m.project, manifest)
        if created is not None:
            self._cache("Pod", m.project).put(created)
        url = f"{self.public_url}{base_url(m.project, m.name)}"
        return SessionStatus(
            phase="Pending",
            reason="Starting",
            message=_unscheduled(name),
            url=url,
            run=name,
            runUid=(created or {}).get("metadata", {}).get("uid"),
            port=PORT,
            startedAt=self.clock(),
            runs=st.runs,
            conditions=st.conditions,
        )

    def _running(self, session: Session, pod: dict[str, Any], st: SessionStatus) -> float | None:
        """The pod is live: wait until it is Ready, then watch activity and lifetime."""
        if not ready(pod):
            obs = observed(pod)
            if obs.state == AttemptState.RUNNING:
                st.phase, st.reason = "Starting", "Starting"
                st.message = "waiting for Jupyter to answer" if st.readyAt is None else "Jupyter is not ready"
            elif scheduled(pod) and not obs.message:
                st.phase, st.reason = "Starting", "Starting"
                st.message = f"pod {pod['metadata']['name']} is fetching its files and environment"
            else:
                st.phase, st.reason = "Pending", "Starting"
                st.message = obs.message or _unscheduled(pod["metadata"]["name"])
            return None  # the pod's next change brings it back
        now_ = self.clock()
        if st.readyAt is None:
            st.readyAt = now_
        if st.idleWarnedAt is not None and st.lastActivity is not None and st.lastActivity > st.idleWarnedAt:
            st.idleWarnedAt = None  # used again: a later idle period warns again
        st.phase, st.reason, st.message = "Running", "Ready", f"open {st.url}"
        verdict = reclaim(now_, session.spec, st)
        if verdict is not None:
            reason, text = verdict
            self._warn(session, reason, text)
            if reason == "IdleSoon":
                st.idleWarnedAt = now_
            else:
                st.phase, st.reason, st.message = "Stopping", reason, text
                return None
        return next_look(now_, session.spec, st)

    # -- writes

    def _write(self, session: Session, st: SessionStatus) -> Session:
        patch = _changed(session.status, st)
        if not patch:
            return session
        m = session.metadata
        try:
            written = self.resources.patch_status("Session", m.project, m.name, patch)
        except NotFound:
            return session
        self._count_reconciled()
        if isinstance(written, Session):
            self._cache("Session", m.project).put(written)
            return written
        return session

    def _mark_stopped(self, session: Session) -> None:
        """Reclaimed: its desired state becomes stopped (as Kubeflow's culler does), the status first."""
        stopped = session.model_copy(deep=True)
        stopped.spec.stopped = True
        try:
            written = self.resources.replace(stopped)
        except Conflict:
            self.queue.add_after(("Session", session.metadata.project, session.metadata.name), 0.1)
            return
        except NotFound:
            return
        self._count_reconciled()
        self._cache("Session", session.metadata.project).put(written)
        self.queue.add(("Session", session.metadata.project, session.metadata.name))

    def _exists(self, session: Session) -> bool:
        """Read before a start (a rare event): a pod gone because the garbage collector is deleting the
        Session would otherwise be replaced by one whose owner is already gone, as the Session's own
        deletion may reach the cache after its pod's."""
        m = session.metadata
        try:
            fresh = self.resources.get("Session", m.project, m.name)
        except NotFound:
            return False
        return fresh.uid == session.uid and fresh.metadata.deletionTimestamp is None

    def _ensure_objects(self, session: Session) -> Session:
        """Its claim, Service and token Secrets (Jupyter's, and runyard's with `tokens`), made once (what
        exists already is kept: the claim's files, the tokens), and the Jupyter Secret's name recorded on the
        Session for the server's proxy."""
        with self._lock:
            if session.uid in self._made:
                return session
        m = session.metadata
        self._create("persistent_volume_claim", m.project, claim_manifest(session))
        owner = {"kind": "Session", "name": m.name, "uid": session.uid}
        service = pods.session_service_manifest(
            m.name, project=m.project, namespace=m.project, owner=owner, port=PORT
        )
        self._create("service", m.project, service)
        self._create("secret", m.project, token_secret_manifest(session))
        if self.tokens is not None and not ensure_token_secret(
            self.core, session, self.tokens, _labels(m.project, m.name)
        ):
            raise Conflict(
                f"secret {runyard_token_secret('Session', m.name)} is an earlier Session's, not yet collected"
            )
        if m.annotations.get(TOKEN_SECRET_ANNOTATION) != secret_name(m.name):
            named = session.model_copy(deep=True)
            named.metadata.annotations[TOKEN_SECRET_ANNOTATION] = secret_name(m.name)
            session = self.resources.replace(named)  # a Conflict: this reconcile is tried again
            self._cache("Session", m.project).put(session)
        with self._lock:
            self._made.add(session.uid)
        return session

    def _create(self, what: str, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create it; one that exists already (made before) is kept: None then."""
        import json

        from runyard.kube.api import translated

        create = getattr(self.core, f"create_namespaced_{what}")
        try:
            with translated():
                reply = create(namespace, body, _preload_content=False)
        except Conflict:
            return None
        self._count_reconciled()
        return json.loads(reply.data)

    def _delete_pod(self, pod: dict[str, Any]) -> None:
        m = pod["metadata"]
        if m.get("deletionTimestamp"):
            return
        from runyard.kube.api import translated

        try:
            with translated():
                self.core.delete_namespaced_pod(
                    m["name"], m["namespace"], grace_period_seconds=int(STOP_GRACE), _preload_content=False
                )
        except NotFound:
            pass
        self._count_reconciled()


def _unscheduled(pod: str) -> str:
    return f"pod {pod} is waiting for a node"


def _owned_by(pod: dict[str, Any], uid: str) -> bool:
    return any(o.get("uid") == uid for o in pod["metadata"].get("ownerReferences") or [])


def _end_reason(pod: dict[str, Any]) -> str:
    obs = observed(pod)
    if obs.oom_killed:
        return "OOMKilled"
    if obs.state == AttemptState.EXITED and obs.exit_code == 0:
        return "Exited"
    return "Error"
