"""Rolling a model back: its spec becomes the one an earlier version was made from. The controller finds
that spec's version among status.versions and rolls it out again (it makes no new version)."""

from __future__ import annotations

from typing import cast

from runyard.core.errors import Conflict
from runyard.core.phases import Reason
from runyard.core.resources import Model, ModelSpec
from runyard.services.auth import Principal
from runyard.services.model_keys import find_model
from runyard.services.notify import Notifier
from runyard.store import Store
from runyard.store.kube.resources import KubeResources

RETRIES = 10  # writes refused because the controller wrote the status meanwhile


def rollback(
    store: Store, notifier: Notifier, who: Principal, project: str, name: str, version: int
) -> Model:
    for attempt in range(RETRIES):
        model = find_model(store, project, name)
        spec = rolled_back(model, version)
        if model.spec == spec:
            return model
        event = (Reason.UPDATED, f"rolled back to version {version} by {who.name}")
        try:
            updated = store.replace(
                model.model_copy(update={"spec": spec}), model.metadata.resourceVersion, events=[event]
            )
        except Conflict:
            if attempt == RETRIES - 1:
                raise
            continue  # the controller wrote the status meanwhile: read again
        notifier.touch(updated.uid)
        return updated
    raise AssertionError("unreachable")


def rolled_back(model: Model, version: int) -> ModelSpec:
    """The model's spec with `version`'s in place (Conflict naming the versions if it has none such). A
    version records what its replicas run, not how many there are: the scaling stays as it is now."""
    known = {v.version: v for v in model.status.versions}
    if version not in known:
        listed = ", ".join(str(n) for n in sorted(known)) or "none yet"
        raise Conflict(f"model {model.metadata.name!r} has no version {version}; its versions: {listed}")
    return ModelSpec.model_validate({**model.spec.model_dump(mode="json"), **known[version].spec})


def rollback_on_cluster(kube: KubeResources, project: str, name: str, version: int) -> Model:
    """rollback, with the Model in a cluster (its controller rolls the Deployment back)."""
    for attempt in range(RETRIES):
        model = cast(Model, kube.get(Model, project, name))
        spec = rolled_back(model, version)
        if model.spec == spec:
            return model
        try:
            return cast(Model, kube.replace(model.model_copy(update={"spec": spec})))
        except Conflict:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")
