"""MLflow's rules for what may be logged and asked for, as its server applies them (mlflow/utils/
validation.py): keys, values and their lengths, batch limits, page tokens and sizes. Each refusal is
Invalid naming the field and the reason, with MLflow's own message where its client shows one.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import posixpath
import re
from collections.abc import Sequence
from typing import Any

from runyard.core.errors import FieldError, Invalid
from runyard.store.tracking import ACTIVE, DELETED
from runyard.store.tracking_points import MAX_DOUBLE, Point, point

MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_RESULTS = 50000
MAX_HISTORY_PAGE = 1_000_000
MAX_DATASET_NAME = 500
MAX_DATASET_DIGEST = 36
MAX_DATASET_SOURCE = 65535
INT64 = (-(2**63), 2**63 - 1)
KEY_RE = re.compile(r"^[/\w.\- :]*$")
BAD_CHARACTERS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) "
    "and slashes (/)."
)
VIEW_STAGES = {"ACTIVE_ONLY": (ACTIVE,), "DELETED_ONLY": (DELETED,), "ALL": (ACTIVE, DELETED)}
VIEW_NUMBERS = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
NUMBER_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def invalid(field: str, reason: str, message: str | None = None) -> Invalid:
    return Invalid(
        message or f"Invalid value for parameter '{field}' supplied: {reason}", [FieldError(field, reason)]
    )


_known_keys: set[str] = set()  # keys already found valid: a training loop logs the same few, often


def check_key(key: Any, field: str) -> str:
    """MLflow's rule for metric, param and tag keys."""
    if key in _known_keys:
        return key
    if key is None or key == "":
        raise invalid(field, "a key name must be provided")
    if not isinstance(key, str):
        raise invalid(field, f"must be a string, not {type(key).__name__}")
    if len(key) > MAX_ENTITY_KEY_LENGTH:
        raise invalid(field, f"is {len(key)} characters; at most {MAX_ENTITY_KEY_LENGTH}")
    if not KEY_RE.match(key):
        raise invalid(field, f"{key!r}: {BAD_CHARACTERS}")
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise invalid(
            field,
            f"{key!r}: names may be treated as files, and must not resolve to other names; this one "
            f"would resolve to {norm!r}",
        )
    if len(_known_keys) < 100_000:
        _known_keys.add(key)
    return key


def _number(value: Any, field: str) -> float:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        if value in NUMBER_WORDS:
            return NUMBER_WORDS[value]
        try:
            return float(value)
        except ValueError:
            pass
    if value is None:
        raise invalid(field, "missing: a value is required")
    raise invalid(field, f"{value!r} is not a number: give a double (64-bit floating point)")


def int64_field(value: Any, field: str, minimum: int = INT64[0]) -> int:
    if isinstance(value, bool):
        raise invalid(field, f"{value!r} is not an integer")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value)
    ):
        number = int(value)
    else:
        raise invalid(field, f"{value!r} is not a valid long (64-bit integer)")
    if not minimum <= number <= INT64[1]:
        what = "a nonnegative long" if minimum == 0 else "a long"
        raise invalid(field, f"{number} is out of range: it must be {what} (64-bit integer)")
    return number


def text_field(value: Any, field: str, limit: int) -> str:
    if value is None:
        raise invalid(field, "missing: a value is required")
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise invalid(
            field,
            f"is {len(value)} characters; at most {limit}",
            f"'{field}' exceeds the maximum length of {limit} characters",
        )
    if "\0" in value:
        raise invalid(field, "contains a NUL character")
    return value


def check_metric(m: Any, path: str) -> tuple[str, float, int, int]:
    """(key, value, timestamp, step) of an MLflow metric dict."""
    if not isinstance(m, dict):
        raise invalid(path, "must be an object with key, value, timestamp and step")
    key = check_key(m.get("key"), f"{path}.key")
    value = _number(m.get("value"), f"{path}.value")
    timestamp = m.get("timestamp")
    ts = (
        timestamp
        if type(timestamp) is int and timestamp >= 0
        else int64_field(timestamp, f"{path}.timestamp", 0)
    )
    step = m.get("step", 0)
    if step is None:
        step = 0
    st = step if type(step) is int and INT64[0] <= step <= INT64[1] else int64_field(step, f"{path}.step")
    return key, value, ts, st


def check_points(metrics: Sequence[Any]) -> list[Point]:
    """MLflow metric dicts as stored points. The common case (a known key, a finite float, int
    timestamp and step) is checked inline: a batch of 1,000 is on the hot path."""
    out: list[Point] = []
    append = out.append
    known = _known_keys
    for i, m in enumerate(metrics):
        try:
            key, value, ts, step = m["key"], m["value"], m["timestamp"], m.get("step", 0)
        except (KeyError, TypeError, AttributeError):
            key = value = ts = step = None
        if (
            key in known
            and type(value) is float
            and -MAX_DOUBLE <= value <= MAX_DOUBLE
            and type(ts) is int
            and 0 <= ts <= INT64[1]
            and type(step) is int
            and INT64[0] <= step <= INT64[1]
        ):
            append((key, step, ts, value, False))
        else:
            append(point(*check_metric(m, f"metrics[{i}]")))
    return out


def key_values(items: Any, path: str, limit: int) -> list[tuple[str, str]]:
    if isinstance(items, dict):
        items = [{"key": k, "value": v} for k, v in items.items()]
    out = []
    for i, item in enumerate(items or ()):
        field = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise invalid(field, "must be an object with key and value")
        key = check_key(item.get("key"), f"{field}.key")
        out.append((key, text_field(item.get("value"), f"{field}.value", limit)))
    return out


def offset_of(token: str | None, field: str = "page_token") -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        offset = data["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise invalid(
        field, "is not a page token this server gave", "Invalid page token, could not base64-decode"
    )


def token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def page_size(value: Any, field: str = "max_results", default: int = 1000) -> int:
    if value is None:
        return default
    n = int64_field(value, field)
    if n < 1 or n > MAX_RESULTS:
        raise invalid(
            field,
            f"{n} is out of range: between 1 and {MAX_RESULTS}",
            f"Invalid value {n} for parameter '{field}' supplied. It must be at most {MAX_RESULTS}",
        )
    return n


def stages_of(view_type: Any) -> tuple[str, ...]:
    if isinstance(view_type, int) and view_type in VIEW_NUMBERS:
        view_type = VIEW_NUMBERS[view_type]
    stages = VIEW_STAGES.get(view_type or "ACTIVE_ONLY")
    if stages is None:
        raise invalid("view_type", f"{view_type!r}: use one of {sorted(VIEW_STAGES)}")
    return stages
