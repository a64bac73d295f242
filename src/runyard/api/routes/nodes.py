"""The node(s) runs go to: capacity, what is allocated, GPUs. STUB (issue 7)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["nodes"])
