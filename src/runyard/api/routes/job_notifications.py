"""A job's webhook secret, which signs its notifications (see services/job_notifications.py)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["jobs"])
