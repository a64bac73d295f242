"""Path parameters shared by the routers, bounded and validated before anything reaches the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path
from pydantic import AfterValidator

from runyard.core.resources import NAME_RE, check_name

# The pattern is for the document; check_name enforces it, with a message that says what a name may be.
_NAME = {"pattern": NAME_RE.pattern}
Project = Annotated[
    str,
    Path(max_length=63, description="a project name", json_schema_extra=_NAME),
    AfterValidator(check_name),
]
Name = Annotated[
    str,
    Path(max_length=63, description="a resource name", json_schema_extra=_NAME),
    AfterValidator(check_name),
]
# PUT names the resource in its document too; metadata.name is validated there and must equal this.
DocName = Annotated[str, Path(max_length=253, description="the document's metadata.name")]
# Bounded and checked here: the store keeps at most 128 characters, and an unchecked one failed there as 503.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        pattern=r"^[!-~]+$",
        description="a client's request id (visible ASCII, at most 128): a retry returns what the first "
        "request made instead of making another",
    ),
]
