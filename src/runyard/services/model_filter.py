"""The filter and order_by of MLflow's search for logged models, applied to the models of the experiments
searched (an experiment holds few models: they are matched here, not in SQL).

    filter  := clause ("AND" clause)*
    clause  := [type "."] key op value     type: attributes | params | tags | metrics (and their aliases)
    op      := = | != | < | <= | > | >= | LIKE | ILIKE
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from runyard.core.errors import FieldError, Invalid

KINDS = {"attribute": "attribute", "attributes": "attribute", "attr": "attribute"}
KINDS |= {"param": "param", "params": "param", "tag": "tag", "tags": "tag"}
KINDS |= {"metric": "metric", "metrics": "metric"}
ALIASES = {"creation_time": "creation_timestamp_ms", "creation_timestamp": "creation_timestamp_ms"}
ALIASES |= {
    "last_updated_time": "last_updated_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
}
TEXT_ATTRIBUTES = {"name", "model_id", "model_type", "status", "source_run_id"}
NUMBER_ATTRIBUTES = {"creation_timestamp_ms", "last_updated_timestamp_ms"}
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
CLAUSE = re.compile(
    r"""\s*(?:(?P<kind>[A-Za-z]+)\.)?(?P<key>`[^`]+`|"[^"]+"|[\w\-:/.]+?)
        \s*(?P<op><=|>=|!=|=|<|>|(?i:ilike|like)(?=[\s'"]))
        \s*(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*""",
    re.VERBOSE,
)
AND = re.compile(r"(?i)and\s+")
T = TypeVar("T")


@dataclass(frozen=True)
class Clause:
    kind: str  # attribute | param | tag | metric
    key: str
    op: str
    value: Any


def _bad(field: str, reason: str) -> Invalid:
    return Invalid(f"invalid {field}", [FieldError(field, reason)])


def parse_filter(text: str | None) -> list[Clause]:
    """Clauses joined by AND; Invalid naming what could not be read."""
    return scan_clauses(text, CLAUSE, _clause)


def scan_clauses(text: str | None, clause: re.Pattern[str], read: Callable[[re.Match], T]) -> list[T]:
    """The clauses of `text` joined by AND, each matched by `clause` and made by `read`; Invalid naming
    what could not be read. The registry's searches read their filters with it too."""
    clauses: list[T] = []
    pos, text = 0, (text or "").strip()
    while pos < len(text):
        m = clause.match(text, pos)
        if m is None:
            raise _bad("filter", f"cannot read a comparison at {text[pos : pos + 40]!r} (character {pos})")
        clauses.append(read(m))
        pos = m.end()
        if pos < len(text):
            joined = AND.match(text, pos)
            if joined is None:
                hint = " (OR is not supported)" if text[pos:].upper().startswith("OR") else ""
                raise _bad("filter", f"expected AND at {text[pos : pos + 40]!r}{hint}")
            pos = joined.end()
    return clauses


def _clause(m: re.Match) -> Clause:
    kind = KINDS.get((m["kind"] or "attributes").lower())
    if kind is None:
        raise _bad("filter", f"invalid entity type {m['kind']!r}: use attributes, params, tags or metrics")
    given, op, raw = _unquote(m["key"]), m["op"].upper(), m["value"]
    key = given
    value: Any = _unquote(raw) if raw[0] in "'\"" else float(raw)
    if kind == "attribute":
        key = ALIASES.get(key, key)
        if key not in TEXT_ATTRIBUTES | NUMBER_ATTRIBUTES:
            valid = sorted(TEXT_ATTRIBUTES | {"creation_timestamp", "last_updated_timestamp"})
            raise _bad("filter", f"invalid attribute {key!r}: use one of {valid}")
    numeric = kind == "metric" or key in NUMBER_ATTRIBUTES
    if numeric and (op in ("LIKE", "ILIKE") or isinstance(value, str)):
        raise _bad("filter", f"{given!r} compares with =, !=, <, <=, >, >= and a number")
    if not numeric and op not in ("=", "!=", "LIKE", "ILIKE"):
        raise _bad("filter", f"{given!r} compares with =, !=, LIKE or ILIKE and a quoted string")
    if not numeric and not isinstance(value, str):
        raise _bad("filter", f"{given!r} compares with a quoted string")
    return Clause(kind, key, op, value)


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] in "`'\"" and token[-1] == token[0]:
        body = token[1:-1]
        return body if token[0] == "`" else re.sub(r"\\(.)", r"\1", body)
    return token


def matches(model: dict, clauses: list[Clause]) -> bool:
    """Whether a model (its row as a dict, params and tags as dicts, metrics by key) meets every clause."""
    return all(_holds(model, c) for c in clauses)


def _holds(model: dict, c: Clause) -> bool:
    lhs = model.get(c.key) if c.kind == "attribute" else model.get(c.kind + "s", {}).get(c.key)
    if lhs is None:
        return False
    if c.op in ("LIKE", "ILIKE"):
        flags = re.IGNORECASE if c.op == "ILIKE" else 0
        return re.fullmatch(_glob(c.value), str(lhs), flags | re.DOTALL) is not None
    return COMPARE[c.op](lhs, c.value)


def _glob(pattern: str) -> str:
    return "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)


def sort_key(field: str) -> tuple[str, str]:
    """(kind, key) of an order_by field name; Invalid for one that cannot be sorted on."""
    kind_name, dot, key = field.partition(".")
    if not dot:
        kind_name, key = "attributes", field
    kind = KINDS.get(kind_name.lower())
    if kind == "attribute":
        key = ALIASES.get(key, key)
        if key in TEXT_ATTRIBUTES | NUMBER_ATTRIBUTES:
            return kind, key
    if kind == "metric" and key:
        return kind, key
    raise _bad("order_by", f"cannot order by {field!r}: use an attribute or metrics.<key>")
