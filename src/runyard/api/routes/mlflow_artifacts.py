"""MLflow's artifact API (/api/2.0/mlflow-artifacts), as its `mlflow-artifacts:` repository calls it.

The first segment of every path is the project: a token reaches only its own project's artifacts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.services.artifacts import ArtifactStore, split_project
from runyard.services.auth import Access, Principal

router = APIRouter()
NO_MULTIPART = "Multipart upload is not supported for the current artifact repository"


@router.get("/artifacts")
def list_artifacts(path: str = "", who: Principal = READ, s: AppState = STATE) -> dict:
    """{files: [{path, is_dir, file_size}]}: the folder `path` (project first); [] for a file."""
    project, rest = split_project(path)
    who.authorize(Access.READ, project)
    return {"files": [f.to_dict() for f in s.artifacts.list(project, rest)]}


@router.get("/artifacts/{path:path}")
def download(path: str, who: Principal = READ, s: AppState = STATE) -> StreamingResponse:
    """The file's bytes, streamed, with its Content-Length."""
    project, rest = split_project(path)
    who.authorize(Access.READ, project)
    return stream_file(s.artifacts, project, rest)


@router.put("/artifacts/{path:path}")
async def upload(request: Request, path: str, who: Principal = WRITE, s: AppState = STATE) -> dict:
    """The raw bytes of one file, streamed to the artifact store; 413 over the server's limit."""
    project, rest = split_project(path)
    who.authorize(Access.WRITE, project)
    await s.artifacts.save(project, rest, request.stream())
    return {}


@router.delete("/artifacts/{path:path}")
def delete(path: str, who: Principal = WRITE, s: AppState = STATE) -> dict:
    """Delete a file or a folder and everything under it."""
    project, rest = split_project(path)
    who.authorize(Access.WRITE, project)
    s.artifacts.remove(project, rest)
    return {}


@router.post("/mpu/create/{path:path}")
def create_multipart_upload(path: str, who: Principal = WRITE) -> JSONResponse:
    """Multipart uploads are not offered (they serve object stores' presigned URLs): told so in the words
    its client looks for, it sends the file in one streamed PUT instead."""
    project, _ = split_project(path)
    who.authorize(Access.WRITE, project)
    body = {"error_code": "NOT_IMPLEMENTED", "message": NO_MULTIPART}
    return JSONResponse(body, status_code=501)


def stream_file(artifacts: ArtifactStore, project: str, path: str) -> StreamingResponse:
    size = artifacts.size(project, path)
    headers = {"Content-Length": str(size)}
    return StreamingResponse(
        artifacts.read(project, path), media_type="application/octet-stream", headers=headers
    )
