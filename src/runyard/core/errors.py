"""One small error tree, mapped to HTTP status codes in one place (`HTTP_STATUS`).

RunyardError
├── Invalid        422  bad input; `details` lists {field, reason}
├── Unauthorized   401  no or unknown bearer token
├── Forbidden      403  the token may not do this
├── NotFound       404
├── Conflict       409  exists already, or a stale resourceVersion
├── Gone           410  a watch asked for changes no longer kept: list again
├── TooLarge       413  a request body over its limit
└── Unavailable    503  a dependency (runtime, store) cannot serve now
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class FieldError:
    field: str
    reason: str


@dataclass
class RunyardError(Exception):
    message: str
    details: list[FieldError] = field(default_factory=list)
    code: str = "Error"

    def __post_init__(self) -> None:
        self.code = type(self).__name__ if type(self) is not RunyardError else "Error"
        super().__init__(self.message)

    def __str__(self) -> str:
        if not self.details:
            return self.message
        lines = [self.message] + [f"  {d.field}: {d.reason}" for d in self.details]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "details": [{"field": d.field, "reason": d.reason} for d in self.details],
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunyardError:
        kinds = (Invalid, Unauthorized, Forbidden, NotFound, Conflict, Gone, TooLarge, Unavailable)
        kind = {c.__name__: c for c in kinds}
        err_cls = kind.get(data.get("code", ""), RunyardError)
        details = [FieldError(d.get("field", ""), d.get("reason", "")) for d in data.get("details") or []]
        return err_cls(data.get("message", "error"), details)


class Invalid(RunyardError):
    pass


class Unauthorized(RunyardError):
    pass


class Forbidden(RunyardError):
    pass


class NotFound(RunyardError):
    pass


class Conflict(RunyardError):
    pass


class Gone(RunyardError):
    pass


class TooLarge(RunyardError):
    pass


class Unavailable(RunyardError):
    pass


HTTP_STATUS: dict[type[RunyardError], int] = {
    Invalid: 422,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    TooLarge: 413,
    Unavailable: 503,
    RunyardError: 500,
}


def status_code(err: RunyardError) -> int:
    return HTTP_STATUS.get(type(err), 500)


# Steps of a location that name a member of a union or a validator, not a field: `cpu.float` is `cpu`.
_NOT_A_FIELD = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|function-.*)$")


def invalid_from_pydantic(exc, prefix: str = "") -> Invalid:
    """Turn a pydantic ValidationError into Invalid with dotted field paths."""
    return Invalid("the resource is invalid", field_errors(exc.errors(), prefix))


def field_errors(errors, prefix: str = "") -> list[FieldError]:
    """Pydantic's error dicts as one FieldError per dotted field path (a union's failures joined)."""
    reasons: dict[str, list[str]] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if not _NOT_A_FIELD.match(str(p))]
        path = ".".join(filter(None, [prefix, *loc])) or "(body)"
        reason = _reason(e)
        if reason not in reasons.setdefault(path, []):
            reasons[path].append(reason)
    return [FieldError(p, " or ".join(r)) for p, r in reasons.items()]


def _reason(e: dict) -> str:
    if e.get("type") == "extra_forbidden":
        return "unknown field"
    msg = e.get("msg", "invalid")
    return msg.removeprefix("Value error, ")
