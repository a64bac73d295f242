"""A Model's versions: one per distinct serving-relevant spec (what its replicas run), numbered in order;
the same spec again (a rollback, a revert) is the same version."""

from __future__ import annotations

import hashlib
import json

from runyard.core.clock import now
from runyard.core.resources import ModelSpec, ModelStatus, ModelVersion
from runyard.services.registry import resolve_model_uri
from runyard.store import Store

KEEP_VERSIONS = 20
SCALING_FIELDS = {"replicas", "autoscaling"}  # changing them scales the replicas, never rolls them


def resolve_source(store: Store, project: str, uri: str | None) -> str | None:
    """The MLflow model the spec names, resolved: an alias (models:/NAME@alias) names one version. Raises
    Invalid or NotFound naming the problem."""
    if uri is None or not uri.startswith("models:/"):
        return uri
    return resolve_model_uri(store, project, uri)


def spec_hash(spec: ModelSpec, source: str | None) -> str:
    doc = spec.model_dump(mode="json", exclude=SCALING_FIELDS)
    doc["source"] = source
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def version_for(st: ModelStatus, spec: ModelSpec, source: str | None) -> tuple[ModelVersion, bool]:
    """The version `spec` asks for (in st.versions, added if new) and whether it is new. The oldest
    versions beyond KEEP_VERSIONS go, never the current one nor the target."""
    digest = spec_hash(spec, source)
    for v in st.versions:
        if v.specHash == digest:
            return v, False
    made = ModelVersion(
        version=max((v.version for v in st.versions), default=0) + 1,
        specHash=digest,
        spec=spec.model_dump(mode="json", exclude=SCALING_FIELDS),
        snapshot=spec.snapshot,
        source=source,
        createdAt=now(),
    )
    st.versions.append(made)
    keep = {st.currentVersion, st.targetVersion, made.version}
    while len(st.versions) > KEEP_VERSIONS:
        oldest = next((v for v in st.versions if v.version not in keep), None)
        if oldest is None:
            break
        st.versions.remove(oldest)
    return made, True
