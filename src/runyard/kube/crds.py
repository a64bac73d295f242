"""The CustomResourceDefinitions of runyard's kinds, generated from the pydantic models the API validates
with, so that `kubectl apply`, `runyard apply` and the REST API accept the same documents. Never edited by
hand: `runyard crds` prints them and the Helm chart carries them (deploy/helm/runyard/crds).

Kubernetes wants *structural* OpenAPI v3 schemas: every node typed, no `$ref`, no types inside `anyOf`, no
`additionalProperties` beside `properties`. pydantic's JSON Schema is turned into one here: references are
inlined, `X | None` becomes `nullable`, `int | str` becomes `x-kubernetes-int-or-string`, any other union of
types and `Any` keep unknown fields (pydantic still checks them on runyard's side), and JSON Schema 2020's
numeric `exclusiveMinimum` becomes OpenAPI 3.0's boolean one. Only spec and status are described: our
ObjectMeta (with its `project`) is not Kubernetes', whose own metadata the API server validates.
"""

from __future__ import annotations

from typing import Any

from runyard.core.kinds import API_GROUP, KINDS, Kind
from runyard.core.resources import ALL_KINDS

# What `kubectl get sess` (etc.) accepts. Not `job` or `run`: `job` already names batch/v1 Jobs, and a short
# name several resources share resolves to whichever kubectl finds first.
SHORT_NAMES = {
    "Session": ["sess"],
    "Experiment": ["exp"],
    "Job": ["ryjob"],
    "Model": ["mdl"],
    "Run": ["ryrun"],
}

# One column per kind beyond Phase and Age: what a glance at `kubectl get` should answer.
EXTRA_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "Session": [{"name": "URL", "type": "string", "jsonPath": ".status.url"}],
    "Experiment": [{"name": "Command", "type": "string", "jsonPath": ".spec.command", "priority": 1}],
    "Job": [
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"},
    ],
    "Model": [
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Version", "type": "integer", "jsonPath": ".status.currentVersion"},
    ],
    "Run": [
        {"name": "Exit Code", "type": "integer", "jsonPath": ".status.exitCode"},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
    ],
}

# The formats an API server knows; others (pydantic's 'uri', 'email'…) are dropped rather than guessed at.
FORMATS = {"date-time", "date", "byte", "int32", "int64", "float", "double", "uuid", "duration"}
# Value checks a structural schema may carry as they are.
KEPT = (
    "description",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
)
PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}
JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One pydantic JSON Schema node as a structural OpenAPI v3 schema (its `$ref`s resolved in `defs`)."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return structural({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    out: dict[str, Any] = {k: node[k] for k in KEPT if k in node}
    if "description" in out:  # docstrings wrap at 110 columns; kubectl explain rewraps them
        out["description"] = " ".join(out["description"].split())
    if "const" in node:
        out["enum"] = [node["const"]]
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) < len(node["anyOf"]):
            out["nullable"] = True
        if len(branches) == 1:
            return {**structural(branches[0], defs), **out}  # the field's own checks win over its type's
        types = {b.get("type") for b in branches}
        if types == {"integer", "string"}:
            return {**out, "x-kubernetes-int-or-string": True}
        return {**out, **PRESERVE}
    kind = node.get("type") or JSON_TYPES.get(type(node.get("const")))
    if kind is None:
        return {**out, **PRESERVE}  # Any
    out = {"type": kind, **out}
    if node.get("format") in FORMATS:
        out["format"] = node["format"]
    if "exclusiveMinimum" in node:
        out.update(minimum=node["exclusiveMinimum"], exclusiveMinimum=True)
    if "exclusiveMaximum" in node:
        out.update(maximum=node["exclusiveMaximum"], exclusiveMaximum=True)
    if kind == "array" and "items" in node:
        out["items"] = structural(node["items"], defs)
    if kind == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props:
            out["properties"] = {name: structural(sub, defs) for name, sub in props.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra, defs)
        else:  # dict[str, Any] or a bare object
            out.update(PRESERVE)
    return out


def openapi_schema(model: type) -> dict[str, Any]:
    """The openAPIV3Schema of one kind: apiVersion, kind, Kubernetes' metadata, our spec and status."""
    full = model.model_json_schema()  # type: ignore[attr-defined]
    defs = full.get("$defs", {})
    props = full["properties"]
    schema: dict[str, Any] = {
        "type": "object",
        "description": " ".join((model.__doc__ or "").split()) or None,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(props["spec"], defs),
            "status": structural(props["status"], defs),
        },
        "required": [p for p in ("spec",) if p in full.get("required", [])],
    }
    return {k: v for k, v in schema.items() if v}


def crd(kind: Kind) -> dict[str, Any]:
    """The CRD of one kind: namespaced (a project is a namespace), v1 only, status as a subresource."""
    model = ALL_KINDS[kind.name]
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(model)},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            *EXTRA_COLUMNS[kind.name],
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    if kind.name == "Model":  # `kubectl scale model NAME --replicas N`
        version["subresources"]["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "runyard", "app.kubernetes.io/component": "crds"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.name,
                "listKind": f"{kind.name}List",
                "plural": kind.plural,
                "singular": kind.name.lower(),
                "shortNames": SHORT_NAMES[kind.name],
                "categories": ["runyard"],
            },
            "versions": [version],
        },
    }


def crds() -> list[dict[str, Any]]:
    """One apiextensions.k8s.io/v1 CRD per kind, in runyard.core.kinds' order."""
    return [crd(kind) for kind in KINDS]
