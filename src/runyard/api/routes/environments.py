"""Environments of a project: list, build, show (with the lock), build log, remove. STUB (issue 7)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["environments"])
