"""Every error leaves the API as {"error": {code, message, details: [{field, reason}]}}, except on MLflow's
own paths, which answer as an MLflow server does: {"error_code", "message"} with MLflow's HTTP status, so
that its client raises its usual MlflowException with the right error_code.

Only a store that cannot be reached is 503 (which clients retry); any other database error is a bug of
ours, answered 500 and logged, never disguised as an outage.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from runyard.core.errors import (
    HTTP_STATUS,
    Conflict,
    FieldError,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    RunyardError,
    TooLarge,
    Unauthorized,
    Unavailable,
    field_errors,
)
from runyard.store.errors import is_outage

log = logging.getLogger("runyard.api")
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
MLFLOW_PATHS = ("/api/2.0/mlflow", "/api/3.0/mlflow")  # tracking, mlflow-artifacts, logged models


class BadRequest(Invalid):
    """A body that is not JSON at all: MLflow's BAD_REQUEST, runyard's Invalid elsewhere."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.code = "Invalid"


class NoEndpoint(NotFound):
    """No route at this MLflow path, or not with this method: MLflow's ENDPOINT_NOT_FOUND, which its
    client takes as "try the next endpoint" where it knows several."""


# (HTTP status, error_code) as MLflow's server gives them; the first class in an error's MRO found wins.
MLFLOW_ERRORS: dict[type[RunyardError], tuple[int, str]] = {
    BadRequest: (400, "BAD_REQUEST"),
    Invalid: (400, "INVALID_PARAMETER_VALUE"),
    Unauthorized: (401, "UNAUTHENTICATED"),
    Forbidden: (403, "PERMISSION_DENIED"),
    NoEndpoint: (404, "ENDPOINT_NOT_FOUND"),
    NotFound: (404, "RESOURCE_DOES_NOT_EXIST"),
    Gone: (404, "RESOURCE_DOES_NOT_EXIST"),
    Conflict: (400, "RESOURCE_ALREADY_EXISTS"),
    TooLarge: (413, "INVALID_PARAMETER_VALUE"),
    Unavailable: (503, "TEMPORARILY_UNAVAILABLE"),
    RunyardError: (500, "INTERNAL_ERROR"),
}


class MlflowErrorBody(BaseModel):
    """An error as MLflow's server answers it (OpenAPI documentation of the MLflow paths)."""

    error_code: str = Field(description="INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, ...")
    message: str


def _mlflow_err(description: str) -> dict[str, Any]:
    return {"model": MlflowErrorBody, "description": description}


MLFLOW_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _mlflow_err(
        "INVALID_PARAMETER_VALUE (the message names the field), RESOURCE_ALREADY_EXISTS, BAD_REQUEST"
    ),
    401: _mlflow_err("UNAUTHENTICATED: no, unknown or revoked bearer token"),
    403: _mlflow_err("PERMISSION_DENIED: the token may not do this in the object's project"),
    404: _mlflow_err("RESOURCE_DOES_NOT_EXIST, or ENDPOINT_NOT_FOUND"),
    503: _mlflow_err("TEMPORARILY_UNAVAILABLE: the store cannot be reached; try again"),
}


def is_mlflow(path: str) -> bool:
    return path.startswith(MLFLOW_PATHS)


def response(err: RunyardError, path: str = "") -> Response:
    """The error in the format of `path`: MLflow's on MLflow paths, runyard's everywhere else."""
    headers = BEARER_CHALLENGE if isinstance(err, Unauthorized) else None
    if is_mlflow(path):
        status, code = mlflow_status(err)
        body = json.dumps({"error_code": code, "message": mlflow_message(err)})
        return Response(body, status_code=status, headers=headers, media_type="application/json")
    status = next((HTTP_STATUS[cls] for cls in _kinds(err) if cls in HTTP_STATUS), 500)
    return JSONResponse({"error": err.to_dict()}, status_code=status, headers=headers)


def mlflow_status(err: RunyardError) -> tuple[int, str]:
    return next(MLFLOW_ERRORS[cls] for cls in _kinds(err) if cls in MLFLOW_ERRORS)


def _kinds(err: RunyardError) -> list[type[RunyardError]]:
    return [c for c in type(err).__mro__ if isinstance(c, type) and issubclass(c, RunyardError)]


def mlflow_message(err: RunyardError) -> str:
    """One line: MLflow's errors have no details, so each field and its reason join the message (unless
    the message already quotes the field, as MLflow's own messages do)."""
    extra = [d for d in err.details if f"'{d.field}'" not in err.message]
    if not extra:
        return err.message
    return err.message + ": " + "; ".join(f"{d.field}: {d.reason}" for d in extra)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _http_error(exc: HTTPException, mlflow: bool) -> RunyardError:
    """Starlette's own errors (no route, wrong method, a body that is not even text) in our format."""
    if isinstance(exc.__cause__, RunyardError):  # raised while FastAPI read the body, e.g. TooLarge
        return exc.__cause__
    if exc.status_code == 400:  # FastAPI could not parse the body: bad UTF-8, nesting too deep
        cause = exc.__cause__
        reason = f"not valid JSON: {_first_line(cause) if cause else exc.detail}"
        if isinstance(cause, RecursionError):
            reason = "not valid JSON: nested too deeply"
        return BadRequest("the request body cannot be read", [FieldError("(body)", reason)])
    kinds: dict[int, type[RunyardError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 413: TooLarge}
    if mlflow:
        kinds.update({404: NoEndpoint, 405: NoEndpoint})
    return kinds.get(exc.status_code, RunyardError)(str(exc.detail))


def install(app: FastAPI) -> None:
    @app.exception_handler(RunyardError)
    async def _runyard(req: Request, exc: RunyardError) -> Response:
        return response(exc, req.url.path)

    @app.exception_handler(HTTPException)
    async def _http(req: Request, exc: HTTPException) -> Response:
        err = _http_error(exc, is_mlflow(req.url.path))
        out = response(err, req.url.path)
        if type(err) is RunyardError or exc.status_code == 405:
            out.status_code = exc.status_code  # e.g. 405: keep Starlette's status, in our format
        out.headers.update(exc.headers or {})  # e.g. 405's Allow
        return out

    @app.exception_handler(DBAPIError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeout)
    async def _store_error(req: Request, exc: Exception) -> Response:
        if is_outage(exc):
            return response(Unavailable(f"store unavailable, try again: {_first_line(exc)}"), req.url.path)
        log.exception("store error on %s %s", req.method, req.url.path, exc_info=exc)
        err = RunyardError("internal error: the store refused the request (a bug; see the log)")
        return response(err, req.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(req: Request, exc: RequestValidationError) -> Response:
        bad_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if bad_json:
            reason = f"not valid JSON: {bad_json[0].get('ctx', {}).get('error', bad_json[0]['msg'])}"
            err = BadRequest("the request is invalid", [FieldError("(body)", reason)])
            return response(err, req.url.path)
        errors = [{**e, "loc": _field_loc(e.get("loc", ()))} for e in exc.errors()]
        return response(Invalid("the request is invalid", field_errors(errors)), req.url.path)

    @app.exception_handler(Exception)
    async def _bug(req: Request, exc: Exception) -> Response:
        """A bug: Starlette's plain 500 (and its log line), but in MLflow's format on MLflow paths, which
        its client would otherwise report as a body it cannot parse."""
        if is_mlflow(req.url.path):
            bug = RunyardError(f"internal error: {type(exc).__name__} (a bug; see the log)")
            return response(bug, req.url.path)
        return PlainTextResponse("Internal Server Error", status_code=500)


def _field_loc(loc) -> tuple:
    """("body", "files", "a.py", "mode") -> ("files", "a.py", "mode"); a header or query keeps its name."""
    if len(loc) > 1 and loc[0] in ("body", "query", "path", "header"):
        return tuple(loc[1:])
    return tuple(loc)
