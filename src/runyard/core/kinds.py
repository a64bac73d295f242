"""The kinds by name, and what users type for them, without the models: cheap for clients to import."""

from __future__ import annotations

import re
from typing import NamedTuple

from runyard.core.errors import FieldError, Invalid

API_GROUP = "runyard.dev"
API_VERSION = f"{API_GROUP}/v1"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_RULE = "lowercase letters, digits and '-', starting and ending with a letter or digit"


class Kind(NamedTuple):
    name: str
    plural: str


KINDS = tuple(
    Kind(name, plural)
    for name, plural in (
        ("Session", "sessions"),
        ("Experiment", "experiments"),
        ("Job", "jobs"),
        ("Model", "models"),
        ("Run", "runs"),
    )
)


def resolve_kind(word: str) -> Kind:
    """What a user types ('experiment', 'exp', 'Experiments', 'runs') as a kind; Invalid names those that
    exist."""
    w = word.lower()
    for kind in KINDS:
        if w in (kind.name.lower(), kind.plural, kind.plural[:3]):
            return kind
    names = ", ".join(k.plural for k in KINDS)
    raise Invalid(f"unknown kind {word!r}", [FieldError("kind", f"expected one of {names}")])


def name_problem(value: str) -> str | None:
    """Why `value` is not a valid resource or project name, or None if it is."""
    if not value:
        return "must be a non-empty string"
    if len(value) > 63:
        return "must be at most 63 characters"
    if not NAME_RE.match(value):
        return f"{value!r} is not a valid name: use {NAME_RULE}"
    return None
