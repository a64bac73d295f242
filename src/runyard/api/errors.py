"""Every error leaves the API as {"error": {code, message, details: [{field, reason}]}}.

Only a store that cannot be reached is 503 (which clients retry); any other database error is a bug of
ours, answered 500 and logged, never disguised as an outage.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from runyard.core.errors import (
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    RunyardError,
    TooLarge,
    Unauthorized,
    Unavailable,
    field_errors,
    status_code,
)
from runyard.store.errors import is_outage

log = logging.getLogger("runyard.api")
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def response(err: RunyardError) -> JSONResponse:
    headers = BEARER_CHALLENGE if isinstance(err, Unauthorized) else None
    return JSONResponse({"error": err.to_dict()}, status_code=status_code(err), headers=headers)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _http_error(exc: HTTPException) -> RunyardError:
    """Starlette's own errors (no route, wrong method, a body that is not even text) in our format."""
    if isinstance(exc.__cause__, RunyardError):  # raised while FastAPI read the body, e.g. TooLarge
        return exc.__cause__
    if exc.status_code == 400:  # FastAPI could not parse the body: bad UTF-8, nesting too deep
        cause = exc.__cause__
        reason = f"not valid JSON: {_first_line(cause) if cause else exc.detail}"
        if isinstance(cause, RecursionError):
            reason = "not valid JSON: nested too deeply"
        return Invalid("the request body cannot be read", [FieldError("(body)", reason)])
    kinds: dict[int, type[RunyardError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 413: TooLarge}
    err = kinds.get(exc.status_code, RunyardError)(str(exc.detail))
    return err


def install(app: FastAPI) -> None:
    @app.exception_handler(RunyardError)
    async def _runyard(_req: Request, exc: RunyardError) -> JSONResponse:
        return response(exc)

    @app.exception_handler(HTTPException)
    async def _http(_req: Request, exc: HTTPException) -> JSONResponse:
        err = _http_error(exc)
        out = response(err)
        if type(err) is RunyardError:
            out.status_code = exc.status_code  # e.g. 405: keep Starlette's status, in our format
        out.headers.update(exc.headers or {})  # e.g. 405's Allow
        return out

    @app.exception_handler(DBAPIError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeout)
    async def _store_error(req: Request, exc: Exception) -> JSONResponse:
        if is_outage(exc):
            return response(Unavailable(f"store unavailable, try again: {_first_line(exc)}"))
        log.exception("store error on %s %s", req.method, req.url.path, exc_info=exc)
        return response(RunyardError("internal error: the store refused the request (a bug; see the log)"))

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        bad_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if bad_json:
            reason = f"not valid JSON: {bad_json[0].get('ctx', {}).get('error', bad_json[0]['msg'])}"
            return response(Invalid("the request is invalid", [FieldError("(body)", reason)]))
        errors = [{**e, "loc": _field_loc(e.get("loc", ()))} for e in exc.errors()]
        return response(Invalid("the request is invalid", field_errors(errors)))


def _field_loc(loc) -> tuple:
    """("body", "files", "a.py", "mode") -> ("files", "a.py", "mode"); a header or query keeps its name."""
    if len(loc) > 1 and loc[0] in ("body", "query", "path", "header"):
        return tuple(loc[1:])
    return tuple(loc)
