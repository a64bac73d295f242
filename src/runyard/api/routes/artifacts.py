"""A run's artifacts, addressed by project and run name: list, download and upload (streamed)."""

from __future__ import annotations

import posixpath

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.api.params import Name, Project
from runyard.api.routes.mlflow_artifacts import stream_file
from runyard.core.errors import FieldError, Invalid
from runyard.services.artifacts import clean_path, locate
from runyard.services.auth import Principal

router = APIRouter(tags=["artifacts"])


def _root(s: AppState, project: str, name: str) -> tuple[str, str, str]:
    """(artifact_uri, project, folder) of the run's artifacts in the artifact store."""
    ref = s.tracking.run_by_name(project, name)
    where = locate(ref.artifact_uri)
    if where is None or where[0] != project:
        reason = f"its artifacts are kept at {ref.artifact_uri}, outside the server's artifact store"
        raise Invalid(f"run {name!r} has no artifacts here", [FieldError("name", reason)])
    return ref.artifact_uri, where[0], where[1]


def _join(folder: str, path: str, field: str = "path") -> str:
    rel = clean_path(path, field)
    return posixpath.join(folder, rel) if rel else folder


@router.get("/projects/{project}/runs/{name}/artifacts")
def list_artifacts(
    project: Project, name: Name, path: str = "", who: Principal = READ, s: AppState = STATE
) -> dict:
    """{root, files: [{path, is_dir, file_size}]}: the folder `path` of the run's artifacts."""
    uri, store_project, folder = _root(s, project, name)
    rel = clean_path(path)
    found = s.artifacts.list(store_project, _join(folder, rel))
    files = [{**f.to_dict(), "path": posixpath.join(rel, f.path) if rel else f.path} for f in found]
    return {"root": uri, "files": files}


@router.get("/projects/{project}/runs/{name}/artifacts/{path:path}")
def download_artifact(
    project: Project, name: Name, path: str, who: Principal = READ, s: AppState = STATE
) -> StreamingResponse:
    """The file's bytes, streamed, with its Content-Length."""
    _, store_project, folder = _root(s, project, name)
    return stream_file(s.artifacts, store_project, _join(folder, path))


@router.put("/projects/{project}/runs/{name}/artifacts/{path:path}", status_code=201)
async def upload_artifact(
    request: Request, project: Project, name: Name, path: str, who: Principal = WRITE, s: AppState = STATE
) -> dict:
    """The raw bytes of one file, streamed into the run's artifacts; 413 over the server's limit."""
    rel = clean_path(path)
    if not rel:
        raise Invalid("an upload needs a file path", [FieldError("path", "must name a file")])
    _, store_project, folder = await anyio.to_thread.run_sync(_root, s, project, name)
    size = await s.artifacts.save(store_project, _join(folder, rel), request.stream())
    return {"path": rel, "file_size": size}
