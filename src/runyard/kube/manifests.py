"""The install on Kubernetes as plain objects: the CRDs, the operator and the API server with least-privilege
RBAC, PostgreSQL (or an external database's URL), and what each project namespace gets. One source for
`runyard manifests`, the Helm chart (runyard.kube.helm renders these same functions with Helm expressions
for values) and the operator, which applies project_objects to each project namespace it sees.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import Field, ValidationError

from runyard.core.errors import FieldError, Invalid, invalid_from_pydantic
from runyard.core.kinds import API_GROUP, KINDS, NAME_RE
from runyard.core.resources import Strict
from runyard.kube.crds import crds

VERSION = "0.1.0"  # the image tag by default; runyard's own version (runyard.__version__)
MANAGED = {"app.kubernetes.io/managed-by": "runyard"}
SPARK = "runyard-spark"
READ, WRITE = ["get", "list", "watch"], ["create", "update", "patch", "delete"]
# What Spark on Kubernetes' driver does with these in its namespace (executors, their config, volumes).
SPARK_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
        "verbs": [*READ, *WRITE, "deletecollection"],
    }
]
# Each project namespace's default quota (requests only: a LimitRange fills in requests a pod leaves out,
# and no default limit is forced on anyone's run).
DEFAULT_QUOTA = {
    "requests.cpu": "64",
    "requests.memory": "256Gi",
    "requests.nvidia.com/gpu": "16",
    "pods": "500",
}
DEFAULT_REQUEST = {"cpu": "100m", "memory": "256Mi"}


class OperatorValues(Strict):
    replicas: int = Field(2, ge=1, le=10, description="one leads (through a Lease); the others stand by")
    resources: dict[str, Any] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        description="the operator container's requests and limits",
    )


class ServerValues(Strict):
    replicas: int = Field(1, ge=1, le=1, description="one: its data directory is a ReadWriteOnce volume")
    port: int = Field(8765, ge=1, le=65535, description="the port of its Service (the pod listens on 8765)")
    storage: str = Field("10Gi", description="size of the data directory's volume (snapshots, artifacts)")
    resources: dict[str, Any] = Field(
        default_factory=lambda: {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        description="the API server container's requests and limits",
    )


class PostgresqlValues(Strict):
    enabled: bool = Field(True, description="run PostgreSQL in the cluster; false: use `url`")
    url: str | None = Field(None, description="postgresql://user:password@host/db when enabled is false")
    image: str = Field("postgres:16", description="the PostgreSQL image when enabled")
    password: str = Field(
        "runyard",
        pattern=r"^[A-Za-z0-9]+$",
        description="the in-cluster database's password (letters and digits: it goes in a URL)",
    )
    storage: str = Field("8Gi", description="size of the database's volume")
    resources: dict[str, Any] = Field(
        default_factory=lambda: {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        description="the database container's requests and limits",
    )


class Values(Strict):
    """What an install may choose; `runyard manifests --values FILE` and the chart's values.yaml."""

    image: str = Field(f"runyard/runyard:{VERSION}", description="the image with runyard installed")
    imagePullPolicy: str = Field("IfNotPresent", description="when nodes pull the image")
    namespace: str = Field(
        "runyard",
        max_length=63,
        pattern=NAME_RE.pattern,
        description="where the operator, API server and database live",
    )
    operator: OperatorValues = Field(default_factory=OperatorValues)
    server: ServerValues = Field(default_factory=ServerValues)
    postgresql: PostgresqlValues = Field(default_factory=PostgresqlValues)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, maps merged key by key as Helm merges a values file over values.yaml."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merged(base[key], value) if both else value
    return out


def load_values(data: dict[str, Any] | None) -> Values:
    """User values over the defaults. Invalid names each wrong key (an unknown one is a typo, not a
    setting to ignore) or type."""
    try:
        values = Values.model_validate(merged(Values().model_dump(), data or {}))
    except ValidationError as exc:
        raise Invalid("the values are invalid", invalid_from_pydantic(exc).details) from None
    if not values.postgresql.enabled and not values.postgresql.url:
        problem = FieldError("postgresql.url", "required when postgresql.enabled is false")
        raise Invalid("the values are invalid", [problem])
    return values


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "runyard", "app.kubernetes.io/component": component}


def _meta(name: str, component: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(component)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _rules_for(kinds_verbs: list[tuple[list[str], list[str], list[str]]]) -> list[dict[str, Any]]:
    return [{"apiGroups": g, "resources": r, "verbs": v} for g, r, v in kinds_verbs]


PLURALS = [k.plural for k in KINDS]


def operator_rules() -> list[dict[str, Any]]:
    """Cluster-wide, because each project is its own namespace, made when the project first appears. It
    may grant the Spark role only what it holds itself (Kubernetes refuses escalation), hence SPARK_RULES.
    Secrets: no list or watch, so it reads only those whose names it knows (its runs' tokens)."""
    spark = SPARK_RULES[0]
    return _rules_for(
        [
            ([API_GROUP], PLURALS, [*READ, *WRITE]),
            ([API_GROUP], [f"{p}/status" for p in PLURALS], ["get", "update", "patch"]),
            # blockOwnerDeletion on a pod owned by a Run needs this where OwnerReferencesPermissionEnforcement
            # is on (OpenShift, hardened clusters).
            ([API_GROUP], [f"{p}/finalizers" for p in PLURALS], ["update"]),
            ([""], spark["resources"], spark["verbs"]),
            ([""], ["pods/log"], ["get"]),
            ([""], ["pods/exec"], ["create", "get"]),
            (["apps"], ["deployments"], [*READ, *WRITE]),
            (["", "events.k8s.io"], ["events"], ["create", "patch"]),
            ([""], ["namespaces"], [*READ, "create", "update", "patch"]),
            ([""], ["resourcequotas", "limitranges", "serviceaccounts"], [*READ, *WRITE]),
            ([""], ["secrets"], ["get", *WRITE]),
            (["rbac.authorization.k8s.io"], ["roles", "rolebindings"], ["get", *WRITE]),
        ]
    )


def _binding(kind: str, name: str, component: str, namespace: str, role_namespace: str | None) -> dict:
    role_kind = "ClusterRole" if kind == "ClusterRoleBinding" else "Role"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": _meta(name, component, role_namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": f"runyard-{component}", "namespace": namespace}],
    }


def _role(kind: str, name: str, component: str, rules: list[dict], namespace: str | None = None) -> dict:
    meta = _meta(name, component, namespace)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}


def _service_account(component: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(f"runyard-{component}", component, namespace),
    }


POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
STORE_URL = {
    "name": "RUNYARD_SERVER_STORE_URL",
    "valueFrom": {"secretKeyRef": {"name": "runyard-database", "key": "url"}},
}


def _deployment(v: Values, component: str, replicas: Any, container: dict, **pod: Any) -> dict[str, Any]:
    name = f"runyard-{component}"
    main = {
        "name": component,
        "image": v.image,
        "imagePullPolicy": v.imagePullPolicy,
        "command": ["runyard"],
        "securityContext": CONTAINER_SECURITY,
        **container,
    }
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": _labels(component)},
        "template": {
            "metadata": {"labels": _labels(component)},
            "spec": {
                "serviceAccountName": name,
                "securityContext": POD_SECURITY,
                "containers": [main],
                **pod,
            },
        },
    }
    if component == "server":  # one pod at a time on the ReadWriteOnce data volume
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, component, v.namespace),
        "spec": spec,
    }


def server_url(v: Values) -> str:
    """Where runs, sessions and the operator reach the API inside the cluster."""
    return f"http://runyard-server.{v.namespace}.svc:{v.server.port}"


def operator_objects(v: Values) -> list[dict[str, Any]]:
    ns = v.namespace
    lease_rules = _rules_for([(["coordination.k8s.io"], ["leases"], ["get", "create", "update", "patch"])])
    downward = [
        {"name": env, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for env, path in (("POD_NAMESPACE", "metadata.namespace"), ("POD_NAME", "metadata.name"))
    ]
    container = {
        "args": ["operator", "--image", v.image, "--server-url", server_url(v)],
        "env": [*downward, STORE_URL],
        "resources": v.operator.resources,
    }
    return [
        _service_account("operator", ns),
        _role("ClusterRole", "runyard-operator", "operator", operator_rules()),
        _binding("ClusterRoleBinding", "runyard-operator", "operator", ns, None),
        # Leader election: Leases in its own namespace only.
        _role("Role", "runyard-operator-leases", "operator", lease_rules, ns),
        _binding("RoleBinding", "runyard-operator-leases", "operator", ns, ns),
        _deployment(v, "operator", v.operator.replicas, container),
    ]


def server_objects(v: Values) -> list[dict[str, Any]]:
    """The API reads and writes the custom resources (runyard apply, the REST API), makes a new project's
    namespace, reads runs' pod logs and reaches sessions (their Service, their token, their activity);
    the rest of their status and everything else are the operator's."""
    ns, port = v.namespace, v.server.port
    listen = 8765
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    env = [
        {"name": "RUNYARD_SERVER_HOST", "value": "0.0.0.0"},
        {"name": "RUNYARD_SERVER_PORT", "value": str(listen)},
        {"name": "RUNYARD_SERVER_PUBLIC_URL", "value": server_url(v)},
        {"name": "RUNYARD_HOME", "value": "/var/lib/runyard"},
        {"name": "RUNYARD_SERVER_KUBERNETES", "value": "true"},  # the kinds are the cluster's objects
        STORE_URL,
    ]
    container = {
        "args": ["server"],
        "env": env,
        "ports": [{"name": "http", "containerPort": listen}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/runyard"}],
        "resources": v.server.resources,
    }
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "runyard-server-data"}}]
    return [
        _service_account("server", ns),
        _role(
            "ClusterRole",
            "runyard-server",
            "server",
            # A project's first object makes its namespace (services/kube_resources.ensure_namespace);
            # `runyard logs` reads a run's pod and its log; the session proxy reads a session's Service and
            # its token's Secret (by name: never listed) and writes its last activity into its status;
            # `runyard describe` lists an object's Events.
            _rules_for(
                [
                    ([API_GROUP], PLURALS, [*READ, *WRITE]),
                    ([API_GROUP], ["sessions/status"], ["patch"]),
                    ([""], ["namespaces"], ["create"]),
                    ([""], ["pods", "pods/log", "services", "secrets"], ["get"]),
                    ([""], ["events"], ["list"]),
                ]
            ),
        ),
        _binding("ClusterRoleBinding", "runyard-server", "server", ns, None),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta("runyard-server-data", "server", ns),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": v.server.storage}},
            },
        },
        _deployment(v, "server", v.server.replicas, container, volumes=volumes),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("runyard-server", "server", ns),
            "spec": {
                "selector": _labels("server"),
                "ports": [{"name": "http", "port": port, "targetPort": "http"}],
            },
        },
    ]


def database_objects(v: Values) -> list[dict[str, Any]]:
    """The Secret both deployments read the store URL from, and PostgreSQL itself when it is enabled."""
    pg = v.postgresql
    if not pg.enabled:
        secret = {"url": pg.url}
    else:
        secret = {
            "url": f"postgresql://runyard:{pg.password}@runyard-postgresql:5432/runyard",
            "password": pg.password,
        }
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("runyard-database", "database", v.namespace),
            "type": "Opaque",
            "stringData": secret,
        }
    ]
    if pg.enabled:
        objects += postgresql_objects(v)
    return objects


def postgresql_objects(v: Values) -> list[dict[str, Any]]:
    ns, labels = v.namespace, _labels("postgresql")
    env = [
        {"name": "POSTGRES_USER", "value": "runyard"},
        {"name": "POSTGRES_DB", "value": "runyard"},
        {
            "name": "POSTGRES_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "runyard-database", "key": "password"}},
        },
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},  # the volume's root holds lost+found
    ]
    ready = {"exec": {"command": ["pg_isready", "-U", "runyard"]}, "periodSeconds": 10}
    container = {
        "name": "postgresql",
        "image": v.postgresql.image,
        "imagePullPolicy": v.imagePullPolicy,
        "env": env,
        "ports": [{"name": "postgresql", "containerPort": 5432}],
        "readinessProbe": ready,
        "livenessProbe": {**ready, "failureThreshold": 6},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
        "resources": v.postgresql.resources,
        "securityContext": CONTAINER_SECURITY,
    }
    security = {**POD_SECURITY, "runAsUser": 999, "fsGroup": 999}  # the image's postgres user
    claim = {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": v.postgresql.storage}},
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("runyard-postgresql", "postgresql", ns),
            "spec": {
                "selector": labels,
                "ports": [{"name": "postgresql", "port": 5432, "targetPort": "postgresql"}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta("runyard-postgresql", "postgresql", ns),
            "spec": {
                "serviceName": "runyard-postgresql",
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"securityContext": security, "containers": [container]},
                },
                "volumeClaimTemplates": [claim],
            },
        },
    ]


def install_objects(v: Values) -> list[dict[str, Any]]:
    """Everything but the CRDs (which the chart keeps apart, in its crds/ folder)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(v.namespace, "namespace")}
    return [namespace, *database_objects(v), *operator_objects(v), *server_objects(v)]


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The whole install, CRDs first, for `kubectl apply -f -`; Invalid for bad values. Fresh objects:
    callers may change them."""
    return copy.deepcopy([*crds(), *install_objects(load_values(values))])


class _Dumper(yaml.SafeDumper):
    """No `&id001` anchors where two places share one dict: every object reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(objects: Any, *, many: bool = False) -> str:
    """Objects as YAML in the order their keys were written (a multi-document stream if `many`)."""
    options: dict[str, Any] = {"Dumper": _Dumper, "sort_keys": False, "width": 1 << 20, "allow_unicode": True}
    return yaml.dump_all(objects, **options) if many else yaml.dump(objects, **options)


def project_objects(project: str, quota: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What each project namespace gets: itself, a ResourceQuota (DEFAULT_QUOTA unless `quota`, a
    ResourceQuota's `hard` map, is given), a LimitRange giving containers that name no requests some, and
    the ServiceAccount and Role Spark on Kubernetes' driver needs to start its executors."""
    labels = {"runyard.dev/project": project, **MANAGED}

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": project, "labels": labels}

    hard = {key: str(value) for key, value in (DEFAULT_QUOTA if quota is None else quota).items()}
    binding = {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SPARK},
        "subjects": [{"kind": "ServiceAccount", "name": SPARK, "namespace": project}],
    }
    return copy.deepcopy(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": project, "labels": labels}},
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": meta("runyard"),
                "spec": {"hard": hard},
            },
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": meta("runyard"),
                "spec": {"limits": [{"type": "Container", "defaultRequest": DEFAULT_REQUEST}]},
            },
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(SPARK)},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta(SPARK),
                "rules": SPARK_RULES,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta(SPARK),
                **binding,
            },
        ]
    )
