"""Shared state and dependencies of the routers."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runyard.runtime.base import Runtime
from runyard.services.auth import Principal, authenticate
from runyard.services.notify import Notifier
from runyard.services.snapshots import BlobStore
from runyard.store import Store

bearer = HTTPBearer(
    auto_error=False, description="a runyard token (the embedded server writes one to HOME/admin-token)"
)


@dataclass
class AppState:
    store: Store
    runtime: Runtime
    blobs: BlobStore
    notifier: Notifier


def state(request: Request) -> AppState:
    return request.app.state.runyard


def principal(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    header = f"Bearer {creds.credentials}" if creds else None
    return authenticate(state(request).store, header)
