"""Every error leaves the API as {"error": {code, message, details: [{field, reason}]}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from runyard.core.errors import FieldError, Invalid, RunyardError, Unavailable, status_code


def _response(err: RunyardError) -> JSONResponse:
    return JSONResponse({"error": err.to_dict()}, status_code=status_code(err))


def install(app: FastAPI) -> None:
    @app.exception_handler(RunyardError)
    async def _runyard(_req: Request, exc: RunyardError) -> JSONResponse:
        return _response(exc)

    @app.exception_handler(DBAPIError)
    async def _store_down(_req: Request, exc: DBAPIError) -> JSONResponse:
        reason = str(exc.orig or exc).strip().splitlines()[0] if (exc.orig or str(exc)) else "unknown error"
        return _response(Unavailable(f"the store is unavailable, try again shortly: {reason}"))

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            if e.get("type") == "json_invalid":
                details.append(
                    FieldError("(body)", f"not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}")
                )
                continue
            where = loc[0] if loc else ""
            path = ".".join(loc[1:]) if where in ("body", "query", "path", "header") else ".".join(loc)
            details.append(FieldError(path or where or "(body)", e.get("msg", "invalid")))
        return _response(Invalid("the request is invalid", details))
