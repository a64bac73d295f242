"""resolve_model_uri and the notices Models that follow a registered model get, on a real store (SQLite
and PostgreSQL) with the registry service and a real Notifier."""

from __future__ import annotations

import pytest

from runyard.core.errors import Invalid, NotFound
from runyard.core.resources import Model
from runyard.services.notify import Notifier
from runyard.services.registry import Registry, resolve_model_uri
from runyard.services.tracking import Tracking

P = "default"


@pytest.fixture
def touched(store) -> tuple[Registry, list[str]]:
    notifier, seen = Notifier(), []
    notifier.subscribe(seen.append)
    return Registry(store, Tracking(store), notifier.touch), seen


def _model(store, name: str, uri: str | None = None, project: str = P) -> str:
    spec = {"modelUri": uri} if uri else {"handler": "serve:predict"}
    doc = {"metadata": {"name": name, "project": project}, "spec": spec}
    return store.create(Model.model_validate(doc)).uid


def _registered(registry: Registry, name: str, versions: int) -> None:
    registry.create_model(P, name)
    for i in range(1, versions + 1):
        registry.create_version(P, name, f"file:///models/{name}/{i}")


def test_uris_resolve_to_the_versions_files(store, touched):
    registry, _ = touched
    _registered(registry, "iris", 3)
    registry.set_alias(P, "iris", "champion", "2")
    registry.transition_stage(P, "iris", "1", "Production", archive_others=False)
    assert resolve_model_uri(store, P, "models:/iris@champion") == "file:///models/iris/2"
    assert resolve_model_uri(store, P, "models:/iris/3") == "file:///models/iris/3"
    assert resolve_model_uri(store, P, "models:/iris/latest") == "file:///models/iris/3"
    assert resolve_model_uri(store, P, "models:/iris/production") == "file:///models/iris/1"
    for other in ("runs:/abc/model", "models:/m-0123456789abcdef", "s3://bucket/model"):
        assert resolve_model_uri(store, P, other) == other
    registry.set_alias(P, "iris", "champion", "3")
    assert resolve_model_uri(store, P, "models:/iris@champion") == "file:///models/iris/3"


def test_a_version_registered_from_another_keeps_its_files(store, touched):
    registry, _ = touched
    _registered(registry, "iris", 2)
    registry.set_alias(P, "iris", "champion", "1")
    registry.create_model(P, "iris-prod")
    copied = registry.create_version(P, "iris-prod", "models:/iris@champion")
    assert copied["source"] == "models:/iris@champion"
    assert registry.download_uri(P, "iris-prod", copied["version"]) == "file:///models/iris/1"
    with pytest.raises(Invalid, match="source"):
        registry.create_version(P, "iris-prod", "models:/iris/1/MLmodel")
    with pytest.raises(NotFound, match="logged model"):
        registry.create_version(P, "iris-prod", "models:/m-00000000000000000000000000000000")


@pytest.mark.parametrize(
    ("uri", "error", "named"),
    [
        ("models:/nope@champion", NotFound, "'nope'"),
        ("models:/iris@challenger", NotFound, "challenger"),
        ("models:/iris/9", NotFound, "version=9"),
        ("models:/iris/Staging", NotFound, "Staging"),
        ("models:/iris/Live", Invalid, "Live"),
        ("models:/iris/1/extra", Invalid, "models:/NAME/VERSION"),
    ],
)
def test_what_does_not_resolve_is_named(store, touched, uri, error, named):
    _registered(touched[0], "iris", 1)
    with pytest.raises(error) as caught:
        resolve_model_uri(store, P, uri)
    assert named in str(caught.value)


def test_a_project_resolves_only_its_own_registry(store, touched):
    _registered(touched[0], "iris", 1)
    with pytest.raises(NotFound, match="project 'other'"):
        resolve_model_uri(store, "other", "models:/iris/1")


def test_models_following_a_registered_model_are_touched_when_its_resolution_changes(store, touched):
    registry, seen = touched
    _registered(registry, "iris", 2)
    followers = {
        _model(store, "by-alias", "models:/iris@champion"),
        _model(store, "pinned", "models:/iris/1"),
    }
    _model(store, "other", "models:/wine@champion")
    _model(store, "handler")
    _model(store, "elsewhere", "models:/iris@champion", project="team-b")

    def after(action) -> set[str]:
        seen.clear()
        action()
        return set(seen)

    assert after(lambda: registry.set_alias(P, "iris", "champion", "2")) == followers
    assert after(lambda: registry.create_version(P, "iris", "file:///models/iris/3")) == followers
    assert after(lambda: registry.transition_stage(P, "iris", "3", "Staging", False)) == followers
    assert after(lambda: registry.delete_alias(P, "iris", "champion")) == followers
    assert after(lambda: registry.delete_version(P, "iris", "3")) == followers
    assert after(lambda: registry.set_model_tag(P, "iris", "k", "v")) == set()  # resolves the same
    assert after(lambda: registry.update_version(P, "iris", "1", "notes")) == set()
    assert after(lambda: registry.delete_model(P, "iris")) == followers
