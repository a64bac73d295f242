"""`runyard manifests` and project_objects: every object valid against the upstream Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors), RBAC that grants what each part needs and no
more, values that merge over the defaults as Helm's do."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

import runyard
from runyard.cli.main import app
from runyard.core.errors import Invalid
from runyard.kube.manifests import SPARK, VERSION, load_values, project_objects, render

K8S = "1.33"
EXTERNAL = {"postgresql": {"enabled": False, "url": "postgresql://app:secret@db.example:5432/runyard"}}


def by_key(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def grants(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


@pytest.mark.parametrize(
    "objects",
    [render(), render(EXTERNAL), project_objects("team-a"), project_objects("team-b", {"pods": 10})],
    ids=["defaults", "external-database", "project", "project-with-quota"],
)
def test_every_manifest_fits_the_upstream_schemas(objects):
    """SchemaNotFoundError would mean an object was not checked at all: it fails the test as well."""
    for obj in objects:
        assert kubernetes_validate.validate(obj, K8S, strict=True)


def test_the_validation_catches_a_broken_manifest():
    """The check above can fail: a wrong type and an unknown field are both refused."""
    deployment = by_key(render())[("Deployment", "runyard-operator")]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S, strict=True)
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automount": True}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sa, K8S, strict=True)


def test_the_install_holds_what_the_issue_lists():
    objects = by_key(render())
    kinds = [o["kind"] for o in render()]
    assert kinds[:5] == ["CustomResourceDefinition"] * 5
    for key in [
        ("Namespace", "runyard"),
        ("ServiceAccount", "runyard-operator"),
        ("ServiceAccount", "runyard-server"),
        ("Deployment", "runyard-operator"),
        ("Deployment", "runyard-server"),
        ("Service", "runyard-server"),
        ("StatefulSet", "runyard-postgresql"),
        ("Service", "runyard-postgresql"),
        ("Secret", "runyard-database"),
        ("Role", "runyard-operator-leases"),
    ]:
        assert key in objects, key
    operator = objects[("Deployment", "runyard-operator")]["spec"]["template"]["spec"]
    assert operator["containers"][0]["args"][0] == "operator"
    assert operator["serviceAccountName"] == "runyard-operator"
    server = objects[("Deployment", "runyard-server")]["spec"]["template"]["spec"]["containers"][0]
    assert server["args"] == ["server"]
    env = {e["name"]: e for e in server["env"]}
    assert env["RUNYARD_SERVER_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "runyard-database",
        "key": "url",
    }
    assert env["RUNYARD_SERVER_PUBLIC_URL"]["value"] == "http://runyard-server.runyard.svc:8765"
    assert runyard.__version__ == VERSION
    assert server["image"] == f"runyard/runyard:{runyard.__version__}"


def test_an_external_database_replaces_postgresql_by_its_url():
    objects = by_key(render(EXTERNAL))
    assert not [k for k in objects if "postgresql" in k[1]]
    assert objects[("Secret", "runyard-database")]["stringData"] == {"url": EXTERNAL["postgresql"]["url"]}
    with pytest.raises(Invalid) as caught:
        render({"postgresql": {"enabled": False}})
    assert [d.field for d in caught.value.details] == ["postgresql.url"]


def test_values_merge_over_the_defaults_key_by_key():
    values = load_values({"operator": {"resources": {"limits": {"cpu": "2"}}}, "namespace": "ml"})
    assert values.operator.resources == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "512Mi", "cpu": "2"},
    }
    cluster_scoped = ("CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding")
    namespaced = [o for o in render({"namespace": "ml"}) if o["kind"] not in cluster_scoped]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"ml"}
    with pytest.raises(Invalid) as caught:
        render({"operator": {"replicas": 0}})
    assert [d.field for d in caught.value.details] == ["operator.replicas"]
    with pytest.raises(Invalid) as caught:
        render({"namespace": "Not_A_Namespace", "postgresql": {"password": "a@b"}})
    assert [d.field for d in caught.value.details] == ["namespace", "postgresql.password"]
    with pytest.raises(Invalid) as caught:
        render({"imagePullPolicy": "IfNotPresent", "imag": "typo"})
    assert [(d.field, d.reason) for d in caught.value.details] == [("imag", "unknown field")]


def test_the_operator_holds_what_it_needs_and_no_more():
    objects = by_key(render())
    rules = objects[("ClusterRole", "runyard-operator")]["rules"]
    for plural in ("experiments", "runs", "sessions", "jobs", "models"):
        assert grants(rules, "runyard.dev", plural, "watch")
        assert grants(rules, "runyard.dev", f"{plural}/status", "patch")
    for resource, verb in [
        ("pods", "create"),
        ("pods/log", "get"),
        ("pods/exec", "create"),
        ("services", "create"),
        ("namespaces", "create"),
        ("resourcequotas", "update"),
        ("limitranges", "create"),
        ("serviceaccounts", "create"),
        ("secrets", "create"),
        ("events", "create"),
    ]:
        assert grants(rules, "", resource, verb), (resource, verb)
    assert grants(rules, "apps", "deployments", "update")
    assert grants(rules, "rbac.authorization.k8s.io", "roles", "create")
    # Reading every Secret of the cluster, or deleting namespaces, is not the operator's business.
    assert not grants(rules, "", "secrets", "list") and not grants(rules, "", "secrets", "watch")
    assert not grants(rules, "", "namespaces", "delete")
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)
    # Kubernetes lets it create the Spark role only if it holds everything that role grants.
    (spark,) = [o for o in project_objects("p") if o["kind"] == "Role"]
    for rule in spark["rules"]:
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                assert grants(rules, "", resource, verb), (resource, verb)
    # Leases only in its own namespace, bound to its own ServiceAccount.
    leases = objects[("Role", "runyard-operator-leases")]
    assert leases["metadata"]["namespace"] == "runyard"
    assert grants(leases["rules"], "coordination.k8s.io", "leases", "update")
    assert not grants(rules, "coordination.k8s.io", "leases", "update")


def test_the_api_server_touches_its_resources_only():
    rules = by_key(render())[("ClusterRole", "runyard-server")]["rules"]
    assert grants(rules, "runyard.dev", "experiments", "create")
    assert not grants(rules, "runyard.dev", "runs/status", "update")
    assert grants(rules, "runyard.dev", "sessions/status", "patch")  # the proxy's activity, only
    assert not grants(rules, "runyard.dev", "sessions/status", "update")
    assert grants(rules, "", "pods/log", "get") and not grants(rules, "", "pods", "create")
    assert not grants(rules, "", "pods", "list")
    assert grants(rules, "", "secrets", "get") and not grants(rules, "", "secrets", "list")  # by name only
    assert grants(rules, "", "namespaces", "create") and not grants(rules, "", "namespaces", "delete")
    assert grants(rules, "", "events", "list") and not grants(rules, "", "events", "create")  # describe's
    env = by_key(render())[("Deployment", "runyard-server")]["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert {"name": "RUNYARD_SERVER_KUBERNETES", "value": "true"} in env
    binding = by_key(render())[("ClusterRoleBinding", "runyard-server")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "runyard-server", "namespace": "runyard"}
    ]


def test_each_project_namespace_gets_quota_limits_and_spark_rbac():
    objects = by_key(project_objects("team-a"))
    assert {o["metadata"].get("namespace", "team-a") for o in objects.values()} == {"team-a"}
    for obj in objects.values():
        assert obj["metadata"]["labels"] == {
            "runyard.dev/project": "team-a",
            "app.kubernetes.io/managed-by": "runyard",
        }
    assert "requests.cpu" in objects[("ResourceQuota", "runyard")]["spec"]["hard"]
    assert objects[("LimitRange", "runyard")]["spec"]["limits"][0]["defaultRequest"]
    spark_rules = objects[("Role", SPARK)]["rules"]
    for resource in ("pods", "services", "configmaps", "persistentvolumeclaims"):
        assert grants(spark_rules, "", resource, "create")
    assert objects[("RoleBinding", SPARK)]["subjects"] == [
        {"kind": "ServiceAccount", "name": SPARK, "namespace": "team-a"}
    ]
    quota = by_key(project_objects("team-b", {"pods": 10, "requests.nvidia.com/gpu": 2}))[
        ("ResourceQuota", "runyard")
    ]
    assert quota["spec"]["hard"] == {"pods": "10", "requests.nvidia.com/gpu": "2"}


def test_callers_may_change_what_they_get():
    first = project_objects("p")
    first[4]["rules"][0]["verbs"].append("escalate")
    assert "escalate" not in project_objects("p")[4]["rules"][0]["verbs"]


def test_runyard_manifests_prints_the_install(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["manifests"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.output)) == render()
    assert "&id" not in result.output  # no YAML anchors: each object reads on its own
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(EXTERNAL))
    result = runner.invoke(app, ["manifests", "--values", str(values)])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.output)) == render(EXTERNAL)


@pytest.mark.parametrize(
    ("text", "code", "said"),
    [
        ("postgresql: {enabled: false}\n", 1, "postgresql.url: required when postgresql.enabled is false"),
        ("operatr: {replicas: 2}\n", 1, "operatr: unknown field"),
        ("[1, 2]\n", 2, "expected a mapping of values"),
        ("a: [\n", 2, "not YAML"),
    ],
)
def test_runyard_manifests_says_what_is_wrong_with_values(tmp_path: Path, text, code, said):
    values = tmp_path / "values.yaml"
    values.write_text(text)
    result = CliRunner().invoke(app, ["manifests", "--values", str(values)])
    assert result.exit_code == code
    assert said in result.output and "Traceback" not in result.output
