"""A job's webhook secret, which signs its notifications (see services/job_notifications.py)."""

from __future__ import annotations

from fastapi import APIRouter

from runyard.api.deps import STATE, WRITE, AppState
from runyard.api.params import Name, Project
from runyard.core.resources import Job
from runyard.services.auth import Principal

router = APIRouter(tags=["jobs"])


@router.get("/projects/{project}/jobs/{name}/webhook-secret")
def webhook_secret(project: Project, name: Name, who: Principal = WRITE, s: AppState = STATE) -> dict:
    """The secret the job's webhook notifications are signed with (X-Runyard-Signature: an HMAC-SHA256 of
    '<t>.<body>'), for the receiver to check them. Write access: whoever holds it can forge them."""
    job = s.store.get(Job, project, name)
    return {"secret": s.store.webhook_secret(job)}
