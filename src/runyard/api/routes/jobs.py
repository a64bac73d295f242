"""Job actions beyond the resource API: trigger by hand, history of fires, next fire times, the webhook
secret, the scheduler's figures."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["jobs"])
