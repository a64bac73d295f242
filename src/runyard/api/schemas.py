"""OpenAPI-only models: the error body every route may answer, and each kind's list. Documentation:
handlers return plain dicts (validating a 5,000-item list again on the way out would cost more than
reading it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model

from runyard.core.resources import Resource


class ErrorDetail(BaseModel):
    field: str = Field(description="dotted path of the offending input, e.g. spec.command")
    reason: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Invalid, Unauthorized, Forbidden, NotFound, Conflict, Gone, TooLarge, ...")
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    error: ErrorInfo


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    401: _err("no, unknown or revoked bearer token (with WWW-Authenticate: Bearer)"),
    403: _err("the token may not do this, or not in this project"),
    404: _err("no such object"),
    409: _err("exists already, or changed since it was read"),
    413: _err("the request body is over its limit"),
    422: _err("invalid input; details name each field and why"),
    503: _err("the store cannot be reached; try again"),
}


class ListMeta(BaseModel):
    revision: int = Field(description="watch from here to see every later change")
    continue_: str | None = Field(None, alias="continue", description="the next page's token; null: the end")


def list_model(kind: type[Resource]) -> type[BaseModel]:
    return create_model(
        f"{kind.__name__}List",
        apiVersion=(str, "runyard.dev/v1"),
        kind=(str, f"{kind.__name__}List"),
        metadata=(ListMeta, ...),
        items=(list[kind], ...),  # type: ignore[valid-type]
    )
