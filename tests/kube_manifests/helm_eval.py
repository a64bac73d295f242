"""A tiny evaluator of the Go-template subset runyard.kube.helm writes, because no `helm` binary can be
installed here: `{{ .Values.a.b }}`, `| quote`, `required "msg" X`, `toYaml X | nindent N`, `not X`,
`{{- if X }} … {{- else }} … {{- end }}`, and the `{{-`/`-}}` whitespace trimming. Anything else is an
error, so a template the generator starts to write beyond this subset fails the tests instead of passing
unchecked. Semantics follow Helm's: toYaml drops its trailing newline, quote writes a Go %q string, a
missing value prints as empty (Helm's `<no value>` only without `| quote`, never reached here)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
LOOKUP = re.compile(r"^\.Values((?:\.[A-Za-z0-9_]+)+)$")


class TemplateError(Exception):
    pass


def _lookup(term: str, values: dict[str, Any]) -> Any:
    m = LOOKUP.match(term)
    if not m:
        raise TemplateError(f"unsupported term {term!r}")
    value: Any = values
    for key in m[1].split(".")[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _pipeline(expr: str, values: dict[str, Any]) -> Any:
    stages = [s.strip() for s in expr.split("|")]
    head = stages[0]
    if m := re.match(r'^required "([^"]*)" (\S+)$', head):
        value = _lookup(m[2], values)
        if value in (None, ""):
            raise TemplateError(m[1])
    elif m := re.match(r"^toYaml (\S+)$", head):
        value = yaml.safe_dump(_lookup(m[1], values), sort_keys=False).rstrip("\n")
    elif m := re.match(r"^not (\S+)$", head):
        value = not _lookup(m[1], values)
    else:
        value = _lookup(head, values)
    for stage in stages[1:]:
        if stage == "quote":
            value = json.dumps(_text(value))
        elif m := re.match(r"^nindent (\d+)$", stage):
            pad = " " * int(m[1])
            value = "\n" + "\n".join(pad + line for line in _text(value).split("\n"))
        else:
            raise TemplateError(f"unsupported function {stage!r}")
    return value


def render(template: str, values: dict[str, Any]) -> str:
    """The template's output for these values."""
    pieces: list[tuple[str, str]] = []  # ("text", s) or ("action", expr), trimming applied
    pos = 0
    for m in ACTION.finditer(template):
        text = template[pos : m.start()]
        if m[1]:
            text = text.rstrip()
        if pieces and pieces[-1][0] == "rtrim":
            pieces.pop()
            text = text.lstrip()
        pieces.append(("text", text))
        pieces.append(("action", m[2]))
        if m[3]:
            pieces.append(("rtrim", ""))
        pos = m.end()
    tail = template[pos:]
    if pieces and pieces[-1][0] == "rtrim":
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(("text", tail))

    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch taken, the enclosing output on)
    on = True
    for kind, body in pieces:
        if kind == "text":
            if on:
                out.append(body)
        elif m := re.match(r"^if (.+)$", body):
            cond = bool(_pipeline(m[1], values)) if on else False
            stack.append((cond, on))
            on = on and cond
        elif body == "else":
            cond, outer = stack[-1]
            on = outer and not cond
        elif body == "end":
            _, on = stack.pop()
        elif on:
            out.append(_text(_pipeline(body, values)))
    if stack:
        raise TemplateError("an if without its end")
    return "".join(out)


def objects(templates: dict[str, str], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the templates make, in file order (sorted names, as Helm reads them)."""
    found = []
    for name in sorted(templates):
        found += [doc for doc in yaml.safe_load_all(render(templates[name], values)) if doc]
    return found
