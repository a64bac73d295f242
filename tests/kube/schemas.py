"""What the API server does with a custom object against its CRD's structural schema, for the emulator:
unknown fields are pruned (silently, as the API server does), then the rest is validated (422 Invalid).

OpenAPI v3's `nullable` and boolean `exclusiveMinimum/Maximum` become JSON Schema draft 4; the
x-kubernetes-* extensions are read for pruning and otherwise ignored.
"""

from __future__ import annotations

from typing import Any

import jsonschema

Obj = dict[str, Any]


def served_schema(crd: Obj, version: str | None = None) -> Obj | None:
    """The openAPIV3Schema of `version` (or the storage version) of a CRD object."""
    versions = crd.get("spec", {}).get("versions") or []
    for v in versions:
        if (v.get("name") == version) if version else v.get("storage"):
            return (v.get("schema") or {}).get("openAPIV3Schema")
    return None


def prune(value: Any, schema: Obj, root: bool = False) -> Any:
    """`value` without the fields `schema` does not declare (apiVersion, kind and metadata always stay)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            if root and k in ("apiVersion", "kind", "metadata"):
                out[k] = v
            elif props is not None and k in props:
                out[k] = prune(v, props[k])
            elif isinstance(extra, dict):
                out[k] = prune(v, extra)
            elif props is None and extra is None and "type" not in schema:
                out[k] = v
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"]) for v in value]
    return value


def _draft4(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_draft4(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _draft4(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def problems(obj: Obj, schema: Obj) -> list[Obj]:
    """The 422 causes ({field, reason, message}) of `obj` against `schema`; empty when valid."""
    validator = jsonschema.Draft4Validator(_draft4(schema))
    return [
        {
            "field": ".".join(str(p) for p in e.absolute_path) or "(root)",
            "reason": "FieldValueInvalid",
            "message": e.message,
        }
        for e in validator.iter_errors(obj)
    ]
