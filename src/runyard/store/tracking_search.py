"""MLflow's search grammar (filter strings and order_by), parsed here and compiled to SQL conditions, so
that a page's LIMIT counts matches and the database does the filtering.

    filter   := clause ("AND" clause)*
    clause   := ident op value | ident "IS" ["NOT"] "NULL"
    ident    := [type "."] key          type: metrics|params|tags|attributes|datasets (and their aliases)
    key      := word | `backticked` | "quoted" | 'quoted'
    op       := = | != | < | <= | > | >= | LIKE | ILIKE | IN | NOT IN
    value    := number | 'string' | "string" | "(" string ("," string)* ")"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Float, Table, and_, case, exists, func, not_, select

from runyard.core.errors import FieldError, Invalid
from runyard.store.tables import (
    TrackingInputRow,
    TrackingLatestMetricRow,
    TrackingParamRow,
    TrackingTagRow,
)

INPUTS = cast(Table, TrackingInputRow.__table__)
LATEST = cast(Table, TrackingLatestMetricRow.__table__)
PARAMS = cast(Table, TrackingParamRow.__table__)
TAGS = cast(Table, TrackingTagRow.__table__)

KIND_ALIASES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time", "run name": "run_name"}
ATTRIBUTE_ALIASES |= {"Run name": "run_name", "Run Name": "run_name"}
NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
RUN_ATTRIBUTES = {"run_id", "run_name", "status", "user_id", "artifact_uri", "start_time", "end_time"}
ORDER_ATTRIBUTES = RUN_ATTRIBUTES | {"experiment_id", "lifecycle_stage"}
DATASET_KEYS = {"name", "digest"}
EXPERIMENT_ATTRIBUTES = {"name", "creation_time", "last_update_time"}
EXPERIMENT_ORDER = {"name", "experiment_id", "creation_time", "last_update_time"}

NUMERIC_OPS = {"=", "!=", "<", "<=", ">", ">="}
STRING_OPS = {"=", "!=", "LIKE", "ILIKE"}
LIST_OPS = {"IN", "NOT IN"}
NULL_OPS = {"IS NULL", "IS NOT NULL"}

TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<tick>`[^`]*`)
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][\w.\-:/]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    kind: str  # metric | param | tag | attribute | dataset
    key: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class OrderKey:
    kind: str
    key: str
    descending: bool = False


def _bad(field: str, message: str) -> Invalid:
    return Invalid(message, [FieldError(field, message)])


def _tokens(text: str, field: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _bad(field, f"cannot parse {text[pos : pos + 30]!r} (at character {pos})")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    if token[:1] in "'\"`" and token[-1:] == token[:1] and len(token) >= 2:
        body = token[1:-1]
        return body if token[0] == "`" else re.sub(r"\\(.)", r"\1", body)
    return token


class _Reader:
    def __init__(self, text: str, field: str):
        self.toks = _tokens(text, field)
        self.i = 0
        self.field = field

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _bad(self.field, "ends too early")
        self.i += 1
        return tok

    def word_is(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].upper() in words

    def identifier(self, default_kind: str = "attribute") -> tuple[str, str]:
        kind, text = self.take()
        if kind in ("tick", "str"):
            return default_kind, _unquote(text)
        if kind != "word":
            raise _bad(self.field, f"expected a key such as metrics.loss, found {text!r}")
        head, dot, rest = text.partition(".")
        if not dot:
            return default_kind, text
        if head.lower() not in KIND_ALIASES and head not in KIND_ALIASES:
            valid = "metrics, params, tags, attributes, datasets"
            raise _bad(self.field, f"invalid entity type {head!r}: use one of {valid}")
        if not rest:  # metrics.`my key` or metrics."my key"
            nxt = self.take()
            if nxt[0] not in ("tick", "str"):
                raise _bad(self.field, f"expected a key after {text!r}")
            rest = _unquote(nxt[1])
        return KIND_ALIASES[head.lower()], rest


def parse_filter(text: str | None, field: str = "filter") -> list[Clause]:
    """MLflow run filter; Invalid names what is wrong."""
    if not text or not text.strip():
        return []
    r = _Reader(text, field)
    clauses = []
    while True:
        clauses.append(_clause(r))
        if r.peek() is None:
            return clauses
        if not r.word_is("AND"):
            found = r.peek()
            hint = " (OR is not supported)" if r.word_is("OR") else ""
            raise _bad(field, f"expected AND between clauses, found {found[1] if found else ''!r}{hint}")
        r.take()


def _clause(r: _Reader) -> Clause:
    kind, key = r.identifier()
    if kind == "attribute":
        key = ATTRIBUTE_ALIASES.get(key, key)
        if key not in RUN_ATTRIBUTES:
            raise _bad(r.field, f"invalid attribute key {key!r}: use one of {sorted(RUN_ATTRIBUTES)}")
    if kind == "dataset" and key not in DATASET_KEYS:
        raise _bad(r.field, f"invalid dataset key {key!r}: use one of {sorted(DATASET_KEYS)}")
    op = _operator(r)
    if op in NULL_OPS:
        if kind not in ("param", "tag"):
            raise _bad(r.field, f"{op} applies to params and tags only")
        return Clause(kind, key, op)
    value = _value(r)
    numeric = kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRIBUTES)
    # beyond MLflow: a param compared with a number compares as one ("params.lr > 0.01"); a value that
    # is not a number never matches
    numeric = numeric or (kind == "param" and isinstance(value, float | int))
    if numeric:
        if op not in NUMERIC_OPS or not isinstance(value, float | int):
            raise _bad(r.field, f"{kind} {key!r} compares with {sorted(NUMERIC_OPS)} and a number")
        return Clause(kind, key, op, value)
    allowed = STRING_OPS | (LIST_OPS if kind in ("attribute", "dataset") else set())
    if op not in allowed:
        raise _bad(r.field, f"{kind} {key!r} compares with {sorted(allowed)}, not {op}")
    if (op in LIST_OPS) != isinstance(value, list) or isinstance(value, float | int):
        raise _bad(
            r.field, f"{kind} {key!r} {op} needs a quoted string" + (" list" if op in LIST_OPS else "")
        )
    return Clause(kind, key, op, value)


def _operator(r: _Reader) -> str:
    kind, text = r.take()
    if kind == "op":
        return "!=" if text == "<>" else text
    word = text.upper() if kind == "word" else ""
    if word in ("LIKE", "ILIKE", "IN"):
        return word
    if word == "NOT" and r.word_is("IN"):
        r.take()
        return "NOT IN"
    if word == "IS":
        negate = r.word_is("NOT")
        if negate:
            r.take()
        if r.word_is("NULL"):
            r.take()
            return "IS NOT NULL" if negate else "IS NULL"
    raise _bad(r.field, f"expected a comparison operator, found {text!r}")


def _value(r: _Reader) -> Any:
    kind, text = r.take()
    if kind == "num":
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind == "str":
        return _unquote(text)
    if kind == "punct" and text == "(":
        items = []
        while True:
            k, t = r.take()
            if k != "str":
                raise _bad(r.field, f"a list holds quoted strings, found {t!r}")
            items.append(_unquote(t))
            k, t = r.take()
            if t == ")":
                return items
            if t != ",":
                raise _bad(r.field, f"expected ',' or ')' in a list, found {t!r}")
    raise _bad(r.field, f"expected a number or a quoted string, found {text!r}")


def parse_order_by(items: list[str] | tuple[str, ...], experiments: bool = False) -> list[OrderKey]:
    out = []
    for i, item in enumerate(items):
        field = f"order_by[{i}]"
        r = _Reader(item, field)
        kind, key = r.identifier()
        descending = False
        if r.word_is("ASC", "DESC"):
            descending = r.take()[1].upper() == "DESC"
        if r.peek() is not None:
            raise _bad(field, f"expected ASC or DESC after the key, found {r.peek()[1]!r}")  # type: ignore[index]
        if experiments:
            if kind != "attribute" or key not in EXPERIMENT_ORDER:
                raise _bad(field, f"experiments sort by one of {sorted(EXPERIMENT_ORDER)}")
        elif kind == "attribute":
            key = ATTRIBUTE_ALIASES.get(key, key)
            if key not in ORDER_ATTRIBUTES:
                raise _bad(
                    field, f"invalid order_by attribute {key!r}: use one of {sorted(ORDER_ATTRIBUTES)}"
                )
        elif kind == "dataset":
            raise _bad(field, "runs cannot be sorted by datasets")
        out.append(OrderKey(kind, key, descending))
    return out


def parse_experiment_filter(text: str | None, field: str = "filter") -> list[Clause]:
    if not text or not text.strip():
        return []
    r = _Reader(text, field)
    clauses = []
    while True:
        kind, key = r.identifier()
        if kind == "attribute" and key not in EXPERIMENT_ATTRIBUTES:
            raise _bad(field, f"invalid attribute key {key!r}: use one of {sorted(EXPERIMENT_ATTRIBUTES)}")
        if kind not in ("attribute", "tag"):
            raise _bad(field, "experiments filter on attributes and tags")
        op = _operator(r)
        value = _value(r)
        numeric = kind == "attribute" and key != "name"
        if numeric and (op not in NUMERIC_OPS or not isinstance(value, float | int)):
            raise _bad(field, f"{key!r} compares with {sorted(NUMERIC_OPS)} and a number")
        if not numeric and (op not in STRING_OPS or not isinstance(value, str)):
            raise _bad(field, f"{kind} {key!r} compares with {sorted(STRING_OPS)} and a quoted string")
        clauses.append(Clause(kind, key, op, value))
        if r.peek() is None:
            return clauses
        if not r.word_is("AND"):
            raise _bad(field, "expected AND between clauses")
        r.take()


def _glob(pattern: str) -> str:
    """A LIKE pattern as a GLOB one: SQLite's LIKE ignores case, GLOB does not."""
    out = []
    for ch in pattern:
        out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
    return "".join(out)


def compare(col: Any, op: str, value: Any, is_sqlite: bool) -> ColumnElement[bool]:
    if op == "LIKE":
        return col.op("GLOB")(_glob(value)) if is_sqlite else col.like(value)
    if op == "ILIKE":
        return func.lower(col).like(func.lower(value))
    if op == "IN":
        return col.in_(value)
    if op == "NOT IN":
        return col.not_in(value)
    return {
        "=": col == value,
        "!=": col != value,
        "<": col < value,
        "<=": col <= value,
        ">": col > value,
        ">=": col >= value,
    }[op]


def _as_number(text: Any, is_sqlite: bool) -> Any:
    """A text column as a number where it holds one, else NULL (which no comparison matches)."""
    if is_sqlite:  # only digits, signs, points and exponents, and at least one digit
        looks = (func.trim(text, "0123456789.eE+- ") == "") & text.op("GLOB")("*[0-9]*")
    else:
        looks = text.op("~")(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
    return case((looks, sa.cast(text, Float)), else_=None)


def clause_sql(c: Clause, columns: dict[str, Any], is_sqlite: bool) -> ColumnElement[bool]:
    """A run clause as a condition on the tracking runs (`columns` maps attributes to their SQL)."""
    run_pk = columns["_pk"]
    if c.kind == "attribute":
        return compare(columns[c.key], c.op, c.value, is_sqlite)
    if c.kind == "dataset":
        q = select(INPUTS.c.run_id).where(INPUTS.c.run_id == run_pk)
        return exists(q.where(compare(INPUTS.c[c.key], c.op, c.value, is_sqlite)))
    table: Table = {"metric": LATEST, "param": PARAMS, "tag": TAGS}[c.kind]
    has_key = select(table.c.run_id).where(table.c.run_id == run_pk, table.c.key == c.key)
    if c.op == "IS NULL":
        return not_(exists(has_key))
    if c.op == "IS NOT NULL":
        return exists(has_key)
    column = table.c.value
    if c.kind == "param" and isinstance(c.value, float | int):
        column = _as_number(column, is_sqlite)
    cond = compare(column, c.op, c.value, is_sqlite)
    if c.kind == "metric":
        cond = and_(cond, table.c.is_nan.is_(False))
    return exists(has_key.where(cond))


def experiment_clause_sql(c: Clause, experiments: Table, tags: Table, is_sqlite: bool) -> ColumnElement[bool]:
    if c.kind == "attribute":
        return compare(experiments.c[c.key], c.op, c.value, is_sqlite)
    q = select(tags.c.experiment_id).where(tags.c.experiment_id == experiments.c.id, tags.c.key == c.key)
    return exists(q.where(compare(tags.c.value, c.op, c.value, is_sqlite)))
