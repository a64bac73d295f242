"""The filter, order_by and paging of MLflow's registry searches, applied to a project's registered models
or versions (a project holds few: they are matched here, not in SQL).

    filter  := clause ("AND" clause)*
    clause  := ["tags." | "tag."] key op value
    op      := = | != | < | <= | > | >= | LIKE | ILIKE | IN | NOT IN      value: 'text', 123, ('a', 'b')

A tag compared with != matches an entity without that tag: MLflow's client excludes prompts from every
search with tags.`mlflow.prompt.is_prompt` != 'true', which must keep the models that are not prompts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runyard.services import model_filter
from runyard.services.logged_models import _offset, _token
from runyard.services.model_filter import _bad as bad
from runyard.services.model_filter import _glob, _unquote, scan_clauses

QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
CLAUSE = re.compile(
    rf"""\s*(?:(?P<kind>tags?)\.)?(?P<key>`[^`]+`|"[^"]+"|[\w\-:/.]+?)
        \s*(?P<op><=|>=|!=|=|<|>|(?i:not\s+in|in)(?=\s*\()|(?i:ilike|like)(?=[\s'"]))
        \s*(?P<value>{QUOTED}|[-+]?\d+|\((?:\s*(?:{QUOTED})\s*,?)*\))\s*""",
    re.VERBOSE | re.IGNORECASE,
)
LIST_ITEM = re.compile(QUOTED)
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    **model_filter.COMPARE,
    "IN": lambda lhs, rhs: lhs in rhs,
    "NOT IN": lambda lhs, rhs: lhs not in rhs,
}


@dataclass(frozen=True)
class Clause:
    tag: bool
    key: str
    op: str
    value: Any  # str, int, or a tuple of str for IN


@dataclass(frozen=True)
class Fields:
    """What one kind of entity can be searched and ordered by: attribute names as MLflow spells them."""

    strings: frozenset[str]
    numbers: frozenset[str]
    lists: frozenset[str]  # the string attributes IN and NOT IN work on
    order: frozenset[str]
    default_order: tuple[tuple[str, bool], ...]  # (attribute, ascending), appended unless given


def parse_filter(text: str | None, fields: Fields) -> list[Clause]:
    return scan_clauses(text, CLAUSE, lambda m: _clause(m, fields))


def _clause(m: re.Match, fields: Fields) -> Clause:
    tag, key, raw = m["kind"] is not None, _unquote(m["key"]), m["value"]
    op = " ".join(m["op"].upper().split())
    value: Any
    if raw.startswith("("):
        value = tuple(_unquote(item) for item in LIST_ITEM.findall(raw))
    else:
        value = _unquote(raw) if raw[0] in "'\"" else int(raw)
    if tag:
        if op not in ("=", "!=", "LIKE", "ILIKE") or not isinstance(value, str):
            raise bad("filter", f"tag {key!r} compares with =, !=, LIKE or ILIKE and a quoted string")
        return Clause(True, key, op, value)
    if key in fields.numbers:
        if op not in ("=", "!=", "<", "<=", ">", ">="):
            raise bad("filter", f"{key!r} compares with =, !=, <, <=, >, >= and a number")
        try:
            value = int(value)
        except ValueError:
            raise bad("filter", f"{key!r} compares with a number, not {value!r}") from None
        return Clause(False, key, op, value)
    if key not in fields.strings:
        raise bad(
            "filter", f"invalid attribute {key!r}: use one of {sorted(fields.strings | fields.numbers)}"
        )
    if op in ("IN", "NOT IN"):
        if key not in fields.lists:
            raise bad("filter", f"{key!r} does not support {op}")
    elif op not in ("=", "!=", "LIKE", "ILIKE") or not isinstance(value, str):
        raise bad("filter", f"{key!r} compares with =, !=, LIKE or ILIKE and a quoted string")
    return Clause(False, key, op, value)


def matches(entity: dict, clauses: list[Clause]) -> bool:
    """Whether an entity (its attributes, and its tags as a dict under "tags") meets every clause."""
    return all(_holds(entity, c) for c in clauses)


def _holds(entity: dict, c: Clause) -> bool:
    lhs = entity["tags"].get(c.key) if c.tag else entity.get(c.key)
    if lhs is None:
        return c.tag and c.op == "!="
    if c.op in ("LIKE", "ILIKE"):
        flags = re.IGNORECASE if c.op == "ILIKE" else 0
        return re.fullmatch(_glob(c.value), str(lhs), flags | re.DOTALL) is not None
    return COMPARE[c.op](lhs, c.value)


def ordered(entities: list[dict], order_by: list[str], fields: Fields) -> list[dict]:
    """Sorted by each `order_by` ("key [ASC|DESC]"), then by the defaults not named."""
    keys: list[tuple[str, bool]] = []
    for given in order_by:
        parts = given.split()
        name = {"timestamp": "creation_timestamp"}.get(parts[0], parts[0]) if parts else ""
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        if name not in fields.order or len(parts) > 2 or direction not in ("ASC", "DESC"):
            reason = f"cannot order by {given!r}: use one of {sorted(fields.order)}, then ASC or DESC"
            raise bad("order_by", reason)
        keys.append((name, direction == "ASC"))
    named = {k for k, _ in keys}
    keys += [(k, asc) for k, asc in fields.default_order if k not in named]
    out = list(entities)
    for key, asc in reversed(keys):
        out.sort(key=lambda e: e[key], reverse=not asc)
    return out


def page(
    entities: list[dict], max_results: int | None, token: str | None, default: int, most: int
) -> tuple[list[dict], str | None]:
    """One page of `entities` and the token of the next, if there is one."""
    size = default if max_results is None else max_results
    if not 1 <= size <= most:
        raise bad("max_results", f"must be between 1 and {most}")
    start = _offset(token)
    end = start + size
    return entities[start:end], _token(end) if end < len(entities) else None


def search(
    entities: list[dict],
    filter: str | None,
    fields: Fields,
    order_by: list[str],
    max_results: int | None,
    token: str | None,
    default: int,
    most: int,
) -> tuple[list[dict], str | None]:
    """The page of `entities` a registry search asks for: those matching `filter`, ordered by `order_by`
    (then the fields' default order), and the token of the next page, if there is one."""
    clauses = parse_filter(filter, fields)
    matched = ordered([e for e in entities if matches(e, clauses)], order_by, fields)
    return page(matched, max_results, token, default, most)
