"""Content-addressed uploads: register a manifest, upload only the blobs it says are missing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import FileResponse

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.api.params import Project
from runyard.services import snapshots as svc
from runyard.services.auth import Principal

router = APIRouter(tags=["snapshots"])
# The pattern is for the document; the blob store checks it, answering 422 naming `digest`.
Digest = Annotated[
    str, Path(description="the SHA-256 of the bytes", json_schema_extra={"pattern": "^[0-9a-f]{64}$"})
]


@router.post("/projects/{project}/snapshots")
def register(
    project: Project, manifest: svc.Manifest = Body(...), who: Principal = WRITE, s: AppState = STATE
) -> dict:
    """{id, missing}: upload each missing blob, then register again; the snapshot exists once none are."""
    return svc.register_snapshot(s.store, s.blobs, project, manifest)


@router.put("/projects/{project}/blobs/{digest}", status_code=201)
async def upload_blob(
    request: Request, digest: Digest, project: Project, who: Principal = WRITE, s: AppState = STATE
) -> dict:
    """The raw bytes of one file, named by their SHA-256; streamed to disk, up to the server's blob limit."""
    await svc.upload_blob(s.store, s.blobs, project, digest, request.stream())
    return {"sha256": digest}


# What a pod's init step fetches (runtime/kubernetes/init.py), where the files are not on the server's disk.
@router.get("/projects/{project}/snapshots/{snapshot}")
def get_snapshot(project: Project, snapshot: str, who: Principal = READ, s: AppState = STATE) -> dict:
    """{id, files}: the manifest of a snapshot registered in this project."""
    return {"id": snapshot, "files": svc.project_snapshot(s.store, project, snapshot)}


@router.get("/projects/{project}/blobs/{digest}", response_class=FileResponse)
def download_blob(
    project: Project, digest: Digest, who: Principal = READ, s: AppState = STATE
) -> FileResponse:
    """The bytes of a file this project uploaded."""
    return FileResponse(
        svc.project_blob(s.store, s.blobs, project, digest), media_type="application/octet-stream"
    )
