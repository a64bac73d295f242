"""Content-addressed uploads: register a manifest, upload only the blobs it says are missing."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Request

from runyard.api.deps import AppState, principal, state
from runyard.services.auth import Principal
from runyard.services.snapshots import Manifest, register_snapshot

router = APIRouter(tags=["snapshots"])


@router.post("/projects/{project}/snapshots")
def register(
    project: str,
    manifest: Manifest = Body(...),
    s: AppState = Depends(state),
    who: Principal = Depends(principal),
) -> dict:
    who.check_project(project)
    return register_snapshot(s.store, s.blobs, manifest)


@router.put("/blobs/{digest}", status_code=201)
async def upload_blob(
    digest: str, request: Request, s: AppState = Depends(state), who: Principal = Depends(principal)
) -> dict:
    chunks = [chunk async for chunk in request.stream()]
    s.blobs.put(digest, chunks)
    return {"sha256": digest}
