"""Environments of a project: list, build, show (with the lock), build log, remove; and the interpreters a
build may use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from anyio.to_thread import run_sync as off_loop
from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.api.params import Project
from runyard.core.errors import Unavailable
from runyard.services.auth import Principal
from runyard.services.environments import Environments

router = APIRouter(tags=["environments"])
POLL = 0.1  # seconds between looks at a build log being written

Ref = Annotated[
    str,
    Path(
        min_length=1,
        max_length=71,
        description="a name of the project's environment, its id (sha256:…) or a unique id prefix",
    ),
]


class EnvironmentIn(BaseModel):
    files: dict[str, str] = Field(
        description='the dependency files by name: {"requirements.txt": "..."}, or pyproject.toml '
        "(with uv.lock), and .python-version"
    )
    name: str | None = Field(None, max_length=63, description="a name for it in the project")
    python: str | None = Field(None, max_length=32, description="the Python version, e.g. 3.12")


def _service(s: AppState) -> Environments:
    if s.environments is None:
        raise Unavailable("this server does not build environments")
    return s.environments


@router.get("/environments/pythons")
def pythons(who: Principal = READ, s: AppState = STATE) -> dict:
    """The interpreters installed on the host that a build may use: [{version, implementation, path}]."""
    return {"items": _service(s).pythons()}


@router.get("/projects/{project}/environments")
def list_environments(project: Project, who: Principal = READ, s: AppState = STATE) -> dict:
    """The environments the project named or its runs used, newest first (without their locks)."""
    items = _service(s).list(project)
    return {"items": [{k: v for k, v in record.items() if k != "lock"} for record in items]}


@router.post("/projects/{project}/environments", status_code=202)
def build_environment(
    project: Project, body: EnvironmentIn = Body(...), who: Principal = WRITE, s: AppState = STATE
) -> dict:
    """Build the environment of these files (or reuse the one built already): the record at once, whose
    state is Building until the build ends (follow its log)."""
    return _service(s).request(project, body.files, body.python, body.name)


@router.get("/projects/{project}/environments/{ref}")
def show_environment(project: Project, ref: Ref, who: Principal = READ, s: AppState = STATE) -> dict:
    """The record, with its lock (the exact, hashed requirements it was built from)."""
    return _service(s).get(project, ref)


@router.get("/projects/{project}/environments/{ref}/log", response_class=StreamingResponse)
async def environment_log(
    project: Project,
    ref: Ref,
    offset: int = Query(0, ge=0, description="start at this byte of the log"),
    follow: bool = Query(False, description="keep streaming until the build ends"),
    who: Principal = READ,
    s: AppState = STATE,
) -> StreamingResponse:
    """The build log as plain text from `offset`; following, it streams while the build runs and ends
    with it."""
    service = _service(s)
    record = await off_loop(service.get, project, ref)  # a 404 now, not mid-stream
    body = _log(service, record["id"], offset, follow)
    return StreamingResponse(body, media_type="text/plain; charset=utf-8")


async def _log(service: Environments, env_id: str, offset: int, follow: bool) -> AsyncIterator[bytes]:
    while True:
        text, offset, complete = await off_loop(service.log, env_id, offset)
        if text:
            yield text.encode()
        if complete or not follow:
            return
        if not text:
            await anyio.sleep(POLL)


@router.delete("/projects/{project}/environments/{ref}", status_code=204)
def remove_environment(project: Project, ref: Ref, who: Principal = WRITE, s: AppState = STATE) -> None:
    """A name: drop the name. An id: remove its files (the record and its lock are kept); 409 while a run
    that has not ended uses it."""
    _service(s).remove(project, ref)
