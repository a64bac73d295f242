"""The CRDs generated from the pydantic models: structural as Kubernetes requires, accepted by the upstream
CRD schema, and accepting what the models accept (the examples, fully written statuses) while refusing
what they refuse. The API server's own checking is modelled by converting each openAPIV3Schema to JSON
Schema (draft 4, whose exclusiveMinimum is OpenAPI 3.0's boolean), with unknown fields refused as
`kubectl apply` (strict field validation) refuses them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, Field

from runyard.cli.main import app
from runyard.core.kinds import KINDS
from runyard.core.resources import ALL_KINDS
from runyard.kube.crds import crds, structural

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FORBIDDEN = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "const", "default", "title"}


def schema_of(kind: str) -> dict[str, Any]:
    (crd,) = [c for c in crds() if c["spec"]["names"]["kind"] == kind]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        yield from nodes(node["items"], f"{path}[]")


def as_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """What the API server checks, as JSON Schema draft 4."""
    out: dict[str, Any] = {k: v for k, v in node.items() if not k.startswith("x-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {k: as_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = as_json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = as_json_schema(node["items"])
    return out


def check(doc: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(as_json_schema(schema_of(doc["kind"]))).validate(doc)


def test_one_crd_per_kind_named_as_kubernetes_requires():
    assert [c["metadata"]["name"] for c in crds()] == [f"{k.plural}.runyard.dev" for k in KINDS]
    for crd, kind in zip(crds(), KINDS, strict=True):
        names = crd["spec"]["names"]
        assert (names["kind"], names["plural"], names["singular"]) == (
            kind.name,
            kind.plural,
            kind.name.lower(),
        )
        assert names["categories"] == ["runyard"]
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["versions"][0]["subresources"]["status"] == {}


def test_short_names_are_unique_and_clash_with_no_builtin():
    builtin = {
        "job",
        "jobs",
        "po",
        "svc",
        "deploy",
        "ns",
        "cm",
        "sa",
        "pv",
        "pvc",
        "ing",
        "ds",
        "rs",
        "sts",
        "ev",
    }
    short = [s for c in crds() for s in c["spec"]["names"]["shortNames"]]
    assert len(short) == len(set(short)) == 5
    assert not set(short) & builtin


@pytest.mark.parametrize("kind", [k.name for k in KINDS])
def test_the_schemas_are_structural(kind):
    """Kubernetes' rules for a structural schema, which apiextensions/v1 refuses a CRD without."""
    schema = schema_of(kind)
    assert schema["properties"]["metadata"] == {"type": "object"}  # our ObjectMeta is not Kubernetes'
    for path, node in nodes(schema):
        assert not FORBIDDEN & node.keys(), f"{kind}{path}: {FORBIDDEN & node.keys()}"
        typed = (
            "type" in node
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        )
        assert typed, f"{kind}{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}"
        assert isinstance(node.get("additionalProperties", {}), dict), f"{kind}{path}: additionalProperties"
        assert isinstance(node.get("exclusiveMinimum", True), bool), f"{kind}{path}: exclusiveMinimum"
        assert "\n" not in node.get("description", ""), f"{kind}{path}"


@pytest.mark.parametrize("kind", [k.name for k in KINDS])
def test_printer_columns_point_at_fields_that_exist(kind):
    (crd,) = [c for c in crds() if c["spec"]["names"]["kind"] == kind]
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns][0] == "Phase" and columns[-1][
        "jsonPath"
    ] == ".metadata.creationTimestamp"
    schema = schema_of(kind)
    for column in columns[:-1]:
        node = schema
        for part in column["jsonPath"].strip(".").split("."):
            node = node["properties"][part]
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), column


def test_the_crds_fit_the_upstream_crd_schema():
    for crd in crds():
        assert kubernetes_validate.validate(crd, "1.33", strict=True)


def test_runyard_crds_prints_them_all():
    result = CliRunner().invoke(app, ["crds"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.output)) == crds()


def example_documents() -> list[dict[str, Any]]:
    return [
        doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
    ]


def test_the_examples_fit_the_crds():
    docs = example_documents()
    assert {d["kind"] for d in docs} == {"Session", "Experiment", "Job", "Model"}
    for doc in docs:
        check(doc)


def test_fully_written_statuses_fit_the_crds():
    """What the store writes back through the status subresource: the models' own JSON, nulls included."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat()
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Started",
        "message": "",
        "lastTransitionTime": now,
    }
    meta = {"name": "x", "project": "p"}
    samples = [
        {
            "kind": "Run",
            "metadata": meta,
            "spec": {"command": ["python", "train.py"], "resources": {"cpu": 0.5, "memory": 512}},
            "status": {
                "phase": "Failed",
                "exitCode": 137,
                "conditions": [condition],
                "attempts": [
                    {"attempt": 1, "handle": {"pod": "x-1"}, "exitCode": 137, "reason": "OOMKilled"}
                ],
                "limits": {"memory": {"bytes": 512}},
                "peakMemoryBytes": 510,
            },
        },
        {"kind": "Run", "metadata": meta, "spec": {"trackingOnly": True}},
        {
            "kind": "Model",
            "metadata": meta,
            "spec": {"handler": "serve:predict", "autoscaling": {"minReplicas": 0, "maxReplicas": 3}},
            "status": {
                "phase": "Ready",
                "versions": [{"version": 1, "specHash": "h", "spec": {"any": ["thing"]}, "createdAt": now}],
                "currentVersion": 1,
                "readyReplicas": 1,
            },
        },
        {
            "kind": "Job",
            "metadata": meta,
            "spec": {"schedule": "@daily", "template": {"command": "echo hi"}},
            "status": {"phase": "Scheduled", "lastRun": {"name": "x-1"}, "nextScheduleTime": now},
        },
        {
            "kind": "Session",
            "metadata": meta,
            "status": {"phase": "Running", "port": 8888, "lastActivity": now},
        },
    ]
    for sample in samples:
        res = ALL_KINDS[sample["kind"]].model_validate({"apiVersion": "runyard.dev/v1", **sample})
        check({**res.model_dump(mode="json"), "metadata": {"name": "x", "namespace": "p"}})


@pytest.mark.parametrize(
    ("kind", "spec", "why"),
    [
        ("Experiment", {"command": "x", "retryPolcy": {}}, "Additional properties"),
        ("Experiment", {"env": {"A": "1"}}, "'command' is a required property"),
        ("Experiment", {"command": "x", "timeoutSeconds": 0}, "less than or equal to the minimum"),
        ("Experiment", {"command": "x", "resources": {"gpu": 65}}, "greater than the maximum"),
        ("Experiment", {"command": "x", "env": {"A": 1}}, "is not of type 'string'"),
        ("Model", {"handler": "a:b", "replicas": "two"}, "is not of type 'integer'"),
        ("Session", {"editor": "emacs"}, "is not one of"),
    ],
)
def test_the_crds_refuse_what_the_models_refuse(kind, spec, why):
    with pytest.raises(jsonschema.ValidationError, match=why):
        check({"apiVersion": "runyard.dev/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec})
    with pytest.raises(ValueError):
        ALL_KINDS[kind].model_validate({"kind": kind, "metadata": {"name": "x"}, "spec": spec})


def test_each_json_schema_construct_becomes_its_structural_form():
    """The conversion rule by rule, on a model that uses each construct once."""

    class Inner(BaseModel):
        """Inner's own description."""

        n: int = Field(ge=1)

    class Toy(BaseModel):
        maybe: Inner | None = Field(default=None, description="the field's description wins")
        qty: int | str = 1
        mixed: float | str = 1.0
        argv: str | list[str] = "x"
        anything: Any = None
        free: dict[str, Any] = {}
        names: dict[str, int] = {}
        positive: float = Field(1.0, gt=0)
        fixed: Literal["only"] = "only"
        choice: Literal["a", "b"] = "a"
        when: datetime | None = None
        email: str = Field("a@b", json_schema_extra={"format": "email"})

    full = Toy.model_json_schema()
    props = {k: structural(v, full["$defs"]) for k, v in full["properties"].items()}
    assert props["maybe"] == {
        "type": "object",
        "description": "the field's description wins",
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "required": ["n"],
        "nullable": True,
    }
    assert props["qty"] == {"x-kubernetes-int-or-string": True}
    assert (
        props["mixed"] == props["argv"] == props["anything"] == {"x-kubernetes-preserve-unknown-fields": True}
    )
    assert props["free"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert props["names"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["positive"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert props["fixed"] == {"type": "string", "enum": ["only"]}
    assert props["choice"] == {"type": "string", "enum": ["a", "b"]}
    assert props["when"] == {"type": "string", "format": "date-time", "nullable": True}
    assert props["email"] == {"type": "string"}  # a format the API server does not know is dropped
