"""A job's webhook secret, which signs its notifications (see services/job_notifications.py)."""

from __future__ import annotations

from fastapi import APIRouter

from runyard.api.deps import STATE, WRITE, AppState
from runyard.api.params import Name, Project
from runyard.services.auth import Principal
from runyard.services.jobs import find_job

router = APIRouter(tags=["jobs"])


@router.get("/projects/{project}/jobs/{name}/webhook-secret")
def webhook_secret(project: Project, name: Name, who: Principal = WRITE, s: AppState = STATE) -> dict:
    """The secret the job's webhook notifications are signed with (X-Runyard-Signature: an HMAC-SHA256 of
    '<t>.<body>'), for the receiver to check them. Write access: whoever holds it can forge them. On a
    cluster the Job is read there; its secret is still the database's, keyed by the Job's uid, which the
    operator signs its notifications with."""
    job = find_job(s.kube if s.kube is not None else s.store, project, name)
    return {"secret": s.store.webhook_secret(job)}
