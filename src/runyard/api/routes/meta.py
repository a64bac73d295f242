"""Health, identity and projects."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel

from runyard import __version__
from runyard.api.deps import AppState, principal, state
from runyard.core.errors import FieldError, Invalid
from runyard.core.resources import check_name
from runyard.services.auth import Principal

health = APIRouter()
router = APIRouter()


@health.get("/healthz", tags=["meta"])
def healthz() -> dict:
    return {"status": "ok", "version": __version__}


@router.get("/whoami", tags=["meta"])
def whoami(who: Principal = Depends(principal)) -> dict:
    return {"name": who.name, "role": who.role, "project": who.project}


class ProjectIn(BaseModel):
    name: str


@router.get("/projects", tags=["projects"])
def list_projects(s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict:
    names = [p for p in s.store.projects() if who.project in (None, p)]
    return {"items": [{"name": n} for n in names]}


@router.post("/projects", status_code=201, tags=["projects"])
def create_project(
    body: ProjectIn = Body(...), s: AppState = Depends(state), who: Principal = Depends(principal)
) -> dict:
    who.check_admin()
    try:
        check_name(body.name)
    except ValueError as exc:
        raise Invalid("bad project name", [FieldError("name", str(exc))]) from None
    s.store.ensure_project(body.name)
    return {"name": body.name}
