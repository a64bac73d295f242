"""API tokens: create (the secret is shown once), list and revoke. Admin only."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, Field

from runyard.api.deps import ADMIN, STATE, AppState
from runyard.core.resources import NAME_RE
from runyard.services import auth
from runyard.services.auth import Principal

router = APIRouter(tags=["tokens"])


class TokenIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$", description="what the token is for"
    )
    role: Literal["admin", "editor", "viewer"]
    project: str | None = Field(
        None, max_length=63, pattern=NAME_RE.pattern, description="the one project it may use; null: all"
    )


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn = Body(...), who: Principal = ADMIN, s: AppState = STATE) -> dict:
    """A new token; `token` in the answer is its secret, shown this once and stored only hashed."""
    return auth.create_token(s.store, body.name, body.role, body.project)


@router.get("/tokens")
def list_tokens(who: Principal = ADMIN, s: AppState = STATE) -> dict:
    return {"items": [auth.token_doc(row) for row in s.store.tokens()]}


@router.delete("/tokens/{token_id}")
def revoke_token(
    token_id: str = Path(..., max_length=64), who: Principal = ADMIN, s: AppState = STATE
) -> dict:
    """Revoke a token: it stops working at once. 404 for an unknown id."""
    return auth.revoke_token(s.store, token_id)
