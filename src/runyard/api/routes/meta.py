"""Health, identity and projects."""

from __future__ import annotations

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from runyard import __version__
from runyard.api.deps import ADMIN, READ, STATE, AppState
from runyard.core.errors import Conflict, FieldError, Invalid
from runyard.core.resources import NAME_RE, check_name
from runyard.services.auth import Principal, iso

health = APIRouter()
router = APIRouter()


@health.get("/healthz", tags=["meta"])
def healthz() -> dict:
    return {"status": "ok", "version": __version__}


@router.get("/whoami", tags=["meta"])
def whoami(who: Principal = READ) -> dict:
    return {"name": who.name, "role": who.role, "project": who.project}


class ProjectIn(BaseModel):
    name: str = Field(
        max_length=63,
        description="lowercase letters, digits and '-'",
        json_schema_extra={"pattern": NAME_RE.pattern},
    )


@router.get("/projects", tags=["projects"])
def list_projects(who: Principal = READ, s: AppState = STATE) -> dict:
    """The projects this token may see, by name."""
    rows = [p for p in s.store.project_list() if who.sees(p.name)]
    return {"items": [_project(p) for p in rows]}


@router.post("/projects", status_code=201, tags=["projects"])
def create_project(body: ProjectIn = Body(...), who: Principal = ADMIN, s: AppState = STATE) -> dict:
    """201 when created; 409 when a project of that name exists already."""
    try:
        check_name(body.name)
    except ValueError as exc:
        raise Invalid("bad project name", [FieldError("name", str(exc))]) from None
    row = s.store.add_project(body.name)
    if row is None:
        raise Conflict(f"project {body.name!r} exists already")
    return _project(row)


def _project(row) -> dict:
    return {"name": row.name, "createdAt": iso(row.created_at)}
