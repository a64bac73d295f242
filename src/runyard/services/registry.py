"""The model registry, as MLflow's registry API presents it: registered models with versions, tags,
aliases and (deprecated, still used) stages, each project a registry of its own.

A version records its `source` as given and where its files are (`storage_location`): a run's artifact
path or a logged model's artifact location, resolved once when it is registered. That location is what
get-download-uri answers and what `resolve_model_uri` gives a Model that serves `models:/NAME@alias`.
Whatever changes what such a URI resolves to (an alias, a version, a stage, the model itself) touches the
Models that follow that registered model, so the controller resolves them again.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.exc import IntegrityError

from runyard.core.errors import Conflict, FieldError, Invalid, NotFound
from runyard.core.resources import Model
from runyard.services.logged_models import MAX_TAG_VALUE, LoggedModels, _pairs
from runyard.services.registry_search import Fields, search
from runyard.services.tracking import Tracking
from runyard.store import Store
from runyard.store.registry import ModelVersionRow, RegisteredModelRow
from runyard.store.tracking import ms

STAGES = {s.lower(): s for s in ("None", "Staging", "Production", "Archived")}
ALIAS = re.compile(r"^[\w\-]{1,255}$")
MAX_NAME = 256
MODEL_FIELDS = Fields(
    strings=frozenset({"name"}),
    numbers=frozenset(),
    lists=frozenset({"name"}),
    order=frozenset({"name", "creation_timestamp", "last_updated_timestamp"}),
    default_order=(("name", True),),
)
VERSION_FIELDS = Fields(
    strings=frozenset({"name", "run_id", "source_path"}),
    numbers=frozenset({"version_number", "creation_timestamp", "last_updated_timestamp"}),
    lists=frozenset({"name", "run_id"}),
    order=frozenset({"name", "version_number", "creation_timestamp", "last_updated_timestamp"}),
    default_order=(("name", True), ("version_number", False)),
)


def _bad(field: str, reason: str) -> Invalid:
    return Invalid(f"invalid {field}", [FieldError(field, reason)])


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise Invalid(f"Missing value for required parameter '{field}'", [FieldError(field, "is required")])
    if "/" in name or ":" in name or len(name) > MAX_NAME:
        raise _bad(field, f"{name!r}: names cannot contain '/' or ':' and have at most {MAX_NAME} characters")
    return name


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise _bad("alias", f"{alias!r}: 1 to 255 letters, digits, '_' and '-'")
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise _bad("alias", f"{alias!r} is reserved (latest, and v<number> name versions)")
    return alias


def version_number(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _bad("version", f"{value!r} is not an integer") from None
    if number < 1:
        raise _bad("version", f"{value!r} is not a version number (they start at 1)")
    return number


def stage_of(value: Any, field: str = "stage") -> str:
    stage = STAGES.get(str(value).lower()) if isinstance(value, str) else None
    if stage is None:
        raise _bad(field, f"{value!r}: use one of {list(STAGES.values())}")
    return stage


def _not_found(name: str) -> NotFound:
    return NotFound(f"Registered Model with name={name} not found")


def _version_not_found(name: str, version: int | str) -> NotFound:
    return NotFound(f"Model Version (name={name}, version={version}) not found")


def _tags(tags: dict[str, str]) -> list[dict]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def render_version(model: RegisteredModelRow, v: ModelVersionRow) -> dict:
    out = {
        "name": model.name,
        "version": str(v.version),
        "creation_timestamp": v.creation_timestamp_ms,
        "last_updated_timestamp": v.last_updated_timestamp_ms,
        "current_stage": v.current_stage,
        "source": v.source,
        "status": v.status,
        "tags": _tags(v.tags),
        "aliases": [a for a, n in model.aliases.items() if n == v.version],
    }
    optional = {
        "description": v.description,
        "run_id": v.run_id,
        "run_link": v.run_link,
        "model_id": v.model_id,
    }
    return out | {k: value for k, value in optional.items() if value}


def latest_per_stage(
    versions: Iterable[ModelVersionRow], stages: Iterable[str] = ()
) -> list[ModelVersionRow]:
    """The newest version in each stage (of `stages`, or of every stage there is), by stage name."""
    wanted = set(stages)
    latest: dict[str, ModelVersionRow] = {}
    for v in versions:
        if (not wanted or v.current_stage in wanted) and (
            v.current_stage not in latest or v.version > latest[v.current_stage].version
        ):
            latest[v.current_stage] = v
    return [latest[s] for s in sorted(latest)]


def render_model(model: RegisteredModelRow, versions: Iterable[ModelVersionRow]) -> dict:
    out = {
        "name": model.name,
        "creation_timestamp": model.creation_timestamp_ms,
        "last_updated_timestamp": model.last_updated_timestamp_ms,
        "latest_versions": [render_version(model, v) for v in latest_per_stage(versions)],
        "tags": _tags(model.tags),
        "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(model.aliases.items())],
    }
    return out | ({"description": model.description} if model.description else {})


def parse_models_uri(uri: str, field: str = "modelUri") -> tuple[str, str] | None:
    """(name, reference) of models:/NAME/VERSION|STAGE|latest or models:/NAME@alias (reference "@alias");
    None for any other URI, a logged model's models:/<model_id> included. Invalid naming `field`."""
    if not uri.startswith("models:/"):
        return None
    path = uri[len("models:/") :].strip("/")
    if "/" in path:
        name, ref = path.split("/", 1)
    elif "@" in path:
        name, alias = path.rsplit("@", 1)
        ref = "@" + alias
    else:
        return None
    if not name or ref in ("", "@") or "/" in ref:
        raise _bad(field, f"{uri!r}: use models:/NAME/VERSION, models:/NAME/latest or models:/NAME@alias")
    return name, ref


def pick_version(store: Store, model: RegisteredModelRow, ref: str) -> ModelVersionRow:
    """The version `ref` names: a number, "latest", a stage (its newest version) or "@alias"."""
    if ref.startswith("@"):
        number = model.aliases.get(ref[1:])
        if number is None:
            raise NotFound(f"Registered model alias {ref[1:]} not found on model {model.name}")
        ref = str(number)
    if ref.isdigit():
        found = store.model_version(model.id, int(ref))
        if found is None:
            raise _version_not_found(model.name, ref)
        return found
    versions = store.model_versions([model.id])
    if ref.lower() != "latest":
        stage = stage_of(ref, "version")
        versions = [v for v in versions if v.current_stage == stage]
    if not versions:
        raise NotFound(f"registered model {model.name} has no version {ref}")
    return max(versions, key=lambda v: v.version)


def resolve_model_uri(store: Store, project: str, uri: str) -> str:
    """Where the files of the version a models:/NAME/VERSION (or /latest, /<stage>, @alias) URI names are,
    in the project's registry; any other URI as it is. Invalid or NotFound naming what is wrong."""
    found = _named_version(store, project, uri)
    return found[1].storage_location if found is not None else uri


def pin_model_uri(store: Store, project: str, uri: str) -> str:
    """A models:/NAME@alias (or /latest, /<stage>) URI as the models:/NAME/VERSION it names now, for a
    replica that loads through MLflow's client (on a cluster: it cannot read the server's files); any
    other URI as it is. Invalid or NotFound naming what is wrong."""
    found = _named_version(store, project, uri)
    return f"models:/{found[0]}/{found[1].version}" if found is not None else uri


def _named_version(store: Store, project: str, uri: str) -> tuple[str, ModelVersionRow] | None:
    """(registered model name, the version) a models:/ URI names; None for any other URI."""
    parsed = parse_models_uri(uri)
    if parsed is None:
        return None
    name, ref = parsed
    model = store.registered_model(project, name)
    if model is None:
        raise NotFound(f"{uri}: registered model {name!r} not found in project {project!r}")
    try:
        return name, pick_version(store, model, ref)
    except NotFound as exc:
        raise NotFound(f"{uri}: {exc.message}") from None


def following(store: Store, project: str, name: str) -> list[str]:
    """The uids of the project's Models whose spec.modelUri names registered model `name`."""
    uids = []
    for model in store.list(Model, project):
        uri = model.spec.modelUri
        try:
            parsed = parse_models_uri(uri) if uri else None
        except Invalid:
            continue
        if parsed is not None and parsed[0] == name:
            uids.append(model.uid)
    return uids


class Registry:
    """Each method works in one project's registry and answers as MLflow's API does (JSON-ready dicts).
    `touch(uid)` is told of each Model that follows a registered model whose resolution changed."""

    def __init__(self, store: Store, tracking: Tracking, touch: Callable[[str], None] | None = None):
        self.store = store
        self.tracking = tracking
        self.touch = touch

    # ---- registered models

    def _model(self, project: str, name: str) -> RegisteredModelRow:
        row = self.store.registered_model(project, check_name(name))
        if row is None:
            raise _not_found(name)
        return row

    def _render(self, model: RegisteredModelRow) -> dict:
        return render_model(model, self.store.model_versions([model.id]))

    def _change(
        self, project: str, name: str, edit: Callable[[RegisteredModelRow], object]
    ) -> RegisteredModelRow:
        def stamped(row: RegisteredModelRow) -> None:
            edit(row)
            row.last_updated_timestamp_ms = ms()

        row = self.store.change_registered_model(project, check_name(name), stamped)
        if row is None:
            raise _not_found(name)
        return row

    def _changed(self, project: str, name: str) -> None:
        if self.touch is not None:
            for uid in following(self.store, project, name):
                self.touch(uid)

    def create_model(self, project: str, name: str, tags: Any = (), description: str | None = None) -> dict:
        now = ms()
        row = RegisteredModelRow(
            project=project,
            name=check_name(name),
            description=description or None,
            tags=_pairs(tags or [], "tags", MAX_TAG_VALUE),
            aliases={},
            last_version=0,
            creation_timestamp_ms=now,
            last_updated_timestamp_ms=now,
        )
        if self.store.add_registered_model(row) is None:
            raise Conflict(f"Registered Model (name={name}) already exists.")
        return render_model(row, [])

    def get_model(self, project: str, name: str) -> dict:
        return self._render(self._model(project, name))

    def update_model(self, project: str, name: str, description: str | None) -> dict:
        def describe(row: RegisteredModelRow) -> None:
            row.description = description or None

        return self._render(self._change(project, name, describe))

    def rename_model(self, project: str, name: str, new_name: str) -> dict:
        check_name(new_name, "new_name")

        def rename(row: RegisteredModelRow) -> None:
            row.name = new_name

        try:
            row = self._change(project, name, rename)
        except IntegrityError:
            raise Conflict(f"Registered Model (name={new_name}) already exists.") from None
        self._changed(project, name)
        self._changed(project, new_name)
        return self._render(row)

    def delete_model(self, project: str, name: str) -> None:
        if not self.store.delete_registered_model(project, check_name(name)):
            raise _not_found(name)
        self._changed(project, name)

    def set_model_tag(self, project: str, name: str, key: str, value: str) -> None:
        tag = _pairs([{"key": key, "value": value}], "tag", MAX_TAG_VALUE)

        def set_tag(row: RegisteredModelRow) -> None:
            row.tags = {**row.tags, **tag}

        self._change(project, name, set_tag)

    def delete_model_tag(self, project: str, name: str, key: str) -> None:
        def drop(row: RegisteredModelRow) -> None:
            if key not in row.tags:
                raise NotFound(f"No tag with name: {key} in registered model {name}")
            row.tags = {k: v for k, v in row.tags.items() if k != key}

        self._change(project, name, drop)

    def search_models(
        self,
        project: str,
        filter: str | None,
        max_results: int | None,
        order_by: list[str],
        token: str | None,
    ) -> tuple[list[dict], str | None]:
        models = self.store.registered_models(project)
        entities = [
            {
                "name": m.name,
                "creation_timestamp": m.creation_timestamp_ms,
                "last_updated_timestamp": m.last_updated_timestamp_ms,
                "tags": m.tags,
                "row": m,
            }
            for m in models
        ]
        found, next_token = search(entities, filter, MODEL_FIELDS, order_by, max_results, token, 100, 1000)
        rows = [e["row"] for e in found]
        by_model: dict[int, list[ModelVersionRow]] = {r.id: [] for r in rows}
        for v in self.store.model_versions(list(by_model)):
            by_model[v.registered_model_id].append(v)
        return [render_model(r, by_model[r.id]) for r in rows], next_token

    def latest_versions(self, project: str, name: str, stages: list[str]) -> list[dict]:
        model = self._model(project, name)
        wanted = [stage_of(s, "stages") for s in stages]
        return [
            render_version(model, v) for v in latest_per_stage(self.store.model_versions([model.id]), wanted)
        ]

    # ---- aliases

    def set_alias(self, project: str, name: str, alias: str, version: Any) -> None:
        check_alias(alias)
        number = version_number(version)
        model = self._model(project, name)
        if self.store.model_version(model.id, number) is None:
            raise _version_not_found(name, number)

        def point(row: RegisteredModelRow) -> None:
            row.aliases = {**row.aliases, alias: number}

        self._change(project, name, point)
        self._changed(project, name)

    def delete_alias(self, project: str, name: str, alias: str) -> None:
        def drop(row: RegisteredModelRow) -> None:
            if alias not in row.aliases:
                raise NotFound(f"Registered model alias {alias} not found on model {name}")
            row.aliases = {a: v for a, v in row.aliases.items() if a != alias}

        self._change(project, name, drop)
        self._changed(project, name)

    def version_by_alias(self, project: str, name: str, alias: str) -> dict:
        model = self._model(project, name)
        return render_version(model, pick_version(self.store, model, "@" + alias))

    # ---- versions

    def _version(self, project: str, name: str, version: Any) -> tuple[RegisteredModelRow, ModelVersionRow]:
        number = version_number(version)
        model = self._model(project, name)
        row = self.store.model_version(model.id, number)
        if row is None:
            raise _version_not_found(name, number)
        return model, row

    def _change_version(
        self, project: str, name: str, version: Any, edit: Callable[[ModelVersionRow], object]
    ) -> dict:
        model, row = self._version(project, name, version)

        def stamped(v: ModelVersionRow) -> None:
            edit(v)
            v.last_updated_timestamp_ms = ms()

        changed = self.store.change_model_version(model.id, row.version, stamped)
        if changed is None:
            raise _version_not_found(name, row.version)
        return render_version(model, changed)

    def locate(
        self, project: str, source: str, run_id: str | None, model_id: str | None
    ) -> tuple[str, str | None, str | None]:
        """(storage location, run_id, model_id) of a new version's source, which must be in `project`."""
        if not isinstance(source, str) or not source:
            raise Invalid(
                "Missing value for required parameter 'source'", [FieldError("source", "is required")]
            )
        location, logged_id = source, None
        if parse_models_uri(source, "source") is not None:  # another registered version
            location = resolve_model_uri(self.store, project, source)
        elif source.startswith("models:/"):  # a logged model: models:/<model_id>
            logged_id = source[len("models:/") :].strip("/")
            model_id = model_id or logged_id
        elif source.startswith("runs:/"):
            run, _, path = source[len("runs:/") :].partition("/")
            ref = self.tracking.run(run)
            self._same_project(ref.project, project, source)
            location = posixpath.join(ref.artifact_uri, path) if path else ref.artifact_uri
            run_id = run_id or ref.run_id
        if model_id:
            logged = LoggedModels(self.store, self.tracking).row(model_id)
            self._same_project(logged.project, project, f"models:/{model_id}")
            if logged_id == model_id:
                location = logged.artifact_location
            run_id = run_id or logged.source_run_id
        if run_id:
            self._same_project(self.tracking.run(run_id).project, project, f"run {run_id}")
        return location, run_id, model_id

    @staticmethod
    def _same_project(found: str, project: str, what: str) -> None:
        if found != project:
            raise _bad("source", f"{what} is in project {found!r}; this registry is project {project!r}'s")

    def create_version(
        self,
        project: str,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Any = (),
        run_link: str | None = None,
        description: str | None = None,
        model_id: str | None = None,
    ) -> dict:
        check_name(name)
        location, run_id, model_id = self.locate(project, source, run_id, model_id)
        version_tags = _pairs(tags or [], "tags", MAX_TAG_VALUE)

        def make(model: RegisteredModelRow, number: int) -> ModelVersionRow:
            now = ms()
            return ModelVersionRow(
                registered_model_id=model.id,
                version=number,
                source=source,
                storage_location=location,
                run_id=run_id,
                run_link=run_link or None,
                model_id=model_id,
                description=description or None,
                current_stage="None",
                status="READY",
                tags=version_tags,
                creation_timestamp_ms=now,
                last_updated_timestamp_ms=now,
            )

        added = self.store.add_model_version(project, name, make)
        if added is None:
            raise _not_found(name)
        self._changed(project, name)
        return render_version(*added)

    def get_version(self, project: str, name: str, version: Any) -> dict:
        return render_version(*self._version(project, name, version))

    def download_uri(self, project: str, name: str, version: Any) -> str:
        return self._version(project, name, version)[1].storage_location

    def update_version(self, project: str, name: str, version: Any, description: str | None) -> dict:
        def describe(v: ModelVersionRow) -> None:
            v.description = description or None

        return self._change_version(project, name, version, describe)

    def delete_version(self, project: str, name: str, version: Any) -> None:
        model, row = self._version(project, name, version)
        if not self.store.delete_model_version(model.id, row.version):
            raise _version_not_found(name, row.version)
        self._changed(project, name)

    def set_version_tag(self, project: str, name: str, version: Any, key: str, value: str) -> None:
        tag = _pairs([{"key": key, "value": value}], "tag", MAX_TAG_VALUE)

        def set_tag(v: ModelVersionRow) -> None:
            v.tags = {**v.tags, **tag}

        self._change_version(project, name, version, set_tag)

    def delete_version_tag(self, project: str, name: str, version: Any, key: str) -> None:
        def drop(v: ModelVersionRow) -> None:
            if key not in v.tags:
                raise NotFound(f"No tag with name: {key} in model version {name} {v.version}")
            v.tags = {k: val for k, val in v.tags.items() if k != key}

        self._change_version(project, name, version, drop)

    def transition_stage(
        self, project: str, name: str, version: Any, stage: Any, archive_others: bool
    ) -> dict:
        """Move the version to `stage`; with archive_others, the versions in that stage (Staging or
        Production) move to Archived."""
        new_stage = stage_of(stage)
        model, row = self._version(project, name, version)
        now = ms()

        def move(versions: list[ModelVersionRow]) -> None:
            for v in versions:
                if v.version == row.version:
                    v.current_stage, v.last_updated_timestamp_ms = new_stage, now
                elif (
                    archive_others and new_stage in ("Staging", "Production") and v.current_stage == new_stage
                ):
                    v.current_stage, v.last_updated_timestamp_ms = "Archived", now

        versions = self.store.change_model_versions(model.id, move)
        self._changed(project, name)
        return render_version(model, next(v for v in versions if v.version == row.version))

    def search_versions(
        self,
        project: str,
        filter: str | None,
        max_results: int | None,
        order_by: list[str],
        token: str | None,
    ) -> tuple[list[dict], str | None]:
        models = {m.id: m for m in self.store.registered_models(project)}
        entities = [
            {
                "name": models[v.registered_model_id].name,
                "version_number": v.version,
                "run_id": v.run_id,
                "source_path": v.source,
                "creation_timestamp": v.creation_timestamp_ms,
                "last_updated_timestamp": v.last_updated_timestamp_ms,
                "tags": v.tags,
                "row": v,
            }
            for v in self.store.model_versions(list(models))
        ]
        found, next_token = search(
            entities, filter, VERSION_FIELDS, order_by, max_results, token, 10_000, 200_000
        )
        return [render_version(models[e["row"].registered_model_id], e["row"]) for e in found], next_token
