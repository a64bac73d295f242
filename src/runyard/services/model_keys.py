"""Model access keys (create, list, revoke) and the access check a replica asks on a credential it has not
seen: a key of that model, or an API token that may read the model's project."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, cast

from runyard.core.clock import aware, now
from runyard.core.errors import Forbidden, NotFound, Unauthorized
from runyard.core.resources import Model
from runyard.services.auth import Access, Principal, authenticate, hash_secret, iso
from runyard.store import Store
from runyard.store.model_keys import ModelKeyRow

KEY_PREFIX = "rym_"
SHOWN_PREFIX = len(KEY_PREFIX) + 6  # characters of a key kept in plain text, to tell keys apart in a list
TOUCH_EVERY = timedelta(minutes=1)  # lastUsedAt is this coarse, so that checks do not all write


def find_model(store: Store, project: str, name: str, models: Any = None) -> Model:
    """The Model, from `models` when the objects live elsewhere (a cluster's KubeResources), else `store`."""
    try:
        return cast(Model, (models or store).get(Model, project, name))
    except NotFound:
        hint = "`runyard models list` lists the project's models"
        raise NotFound(f"model {name!r} not found in project {project!r}; {hint}") from None


def key_doc(row: ModelKeyRow) -> dict:
    """A key as the API lists it: never the key or its hash."""
    return {
        "id": row.id,
        "prefix": row.prefix,
        "model": row.model_name,
        "description": row.description,
        "createdBy": row.created_by,
        "createdAt": iso(row.created_at),
        "lastUsedAt": iso(row.last_used_at) if row.last_used_at else None,
    }


def create_key(
    store: Store, who: Principal, project: str, name: str, description: str, models: Any = None
) -> dict:
    """A new key of the model; `key` in the answer is shown this once and stored only hashed."""
    model = find_model(store, project, name, models)
    key = KEY_PREFIX + secrets.token_urlsafe(32)  # 43 characters
    row = ModelKeyRow(
        id=secrets.token_hex(8),
        key_hash=hash_secret(key),
        prefix=key[:SHOWN_PREFIX],
        model_uid=model.uid,
        project=project,
        model_name=name,
        description=description,
        created_by=who.name[:128],
        created_at=now(),
        last_used_at=None,
    )
    store.add_model_key(row)
    return {**key_doc(row), "key": key}


def list_keys(store: Store, project: str, name: str, models: Any = None) -> list[dict]:
    return [key_doc(row) for row in store.model_keys(find_model(store, project, name, models).uid)]


def revoke_key(store: Store, project: str, name: str, key_id: str, models: Any = None) -> None:
    if not store.delete_model_key(find_model(store, project, name, models).uid, key_id):
        raise NotFound(f"model {name!r} has no key {key_id!r}; `runyard models keys list {name}` lists them")


def check_access(store: Store, credential: str | None, project: str, name: str, models: Any = None) -> str:
    """Return who is let in ("key <id>" or the token's name); raise Unauthorized for no or an unknown
    credential, Forbidden for a key of another model or a token that may not read the project. `models`:
    where the Models are when not in `store` (a cluster)."""
    if not credential:
        raise Unauthorized(
            "missing credential: send 'Authorization: Bearer <model key or API token>' or 'X-Runyard-Key'"
        )
    if not credential.startswith(KEY_PREFIX):
        who = authenticate(store, f"Bearer {credential}")
        who.authorize(Access.READ, project)
        return who.name
    owner = _key_owner(store, credential, models or store)
    if owner is None:
        raise Unauthorized("unknown or revoked model key")
    if (owner.project, owner.model_name) != (project, name):
        raise Forbidden(
            f"this key is for model {owner.model_name!r} of project {owner.project!r}, not {name!r}"
        )
    when = now()
    last = aware(owner.last_used_at)
    if last is None or when - last >= TOUCH_EVERY:
        store.touch_model_key(owner.id, when)
    return f"key {owner.id}"


def _key_owner(store: Store, credential: str, models: Any) -> ModelKeyRow | None:
    """The key's row, while the Model it names still exists with the key's uid: a Model deleted and made
    again under its name gets none of the old keys (on a cluster nothing deletes a deleted Model's keys)."""
    row = store.model_key(hash_secret(credential))
    if row is None:
        return None
    try:
        model = models.get(Model, row.project, row.model_name)
    except NotFound:
        return None
    return row if model.uid == row.model_uid else None
