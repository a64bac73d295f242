"""Model verbs: access keys, the access check replicas ask, metrics, rollback; and Prometheus /metrics."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
