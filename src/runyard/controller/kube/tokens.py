"""Runyard tokens on a cluster: issued in the platform's database (tokens stay in PostgreSQL, as on one
machine) and handed to pods through Secrets, never in a pod's spec. A Run's pod gets one per attempt,
revoked when the Run ends; a Model's replicas and a Session's pod share one per object, made with its first
pod and revoked when the object is deleted. A pod's init container fetches the snapshot with it, and the
process reports its tracking data with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from runyard.core.errors import Conflict
from runyard.core.resources import Resource
from runyard.runtime.kubernetes import pods

if TYPE_CHECKING:
    from runyard.store import Store


class Tokens(Protocol):
    def issue(self, res: Resource, attempt: int | None = None) -> str: ...

    def revoke(self, res: Resource) -> None: ...

    def discard(self, secret: str) -> None: ...

    def sweep(self, kind: str, live: Callable[[], set[str]], projects: list[str] | None) -> int: ...


class StoreTokens:
    def __init__(self, store: Store):
        self.store = store

    def issue(self, res: Resource, attempt: int | None = None) -> str:
        """A token with a run's rights in the object's project, tied to the object's uid."""
        from runyard.services.auth import issue_token

        m = res.metadata
        name = f"{res.kind.lower()} {m.name}" + (f" attempt {attempt}" if attempt is not None else "")
        return issue_token(self.store, name, "run", m.project, res.uid)

    def revoke(self, res: Resource) -> None:
        """Every token of the object: nothing of it calls the API any more."""
        self.store.revoke_run_tokens(res.uid)

    def discard(self, secret: str) -> None:
        """Revoke one token that was issued and never handed out."""
        from runyard.services.auth import hash_secret

        row = self.store.token_by_hash(hash_secret(secret))
        if row is not None:
            self.store.revoke_token(row.id)

    def sweep(self, kind: str, live: Callable[[], set[str]], projects: list[str] | None) -> int:
        """Revoke the tokens of `kind`'s objects that are gone (deleted while no operator watched), in
        `projects` (None: all); `live()`: the uids of those there are, asked after the tokens are read (a
        token is issued for an object already cached, so one issued meanwhile is never taken for an
        orphan). The database is the cluster's: a local server's run would look deleted. How many objects'
        tokens went."""
        found = self.store.live_run_tokens(f"{kind.lower()} ")
        there = live()
        gone = {
            t.run_uid
            for t in found
            if t.run_uid and t.run_uid not in there and (projects is None or t.project in projects)
        }
        for uid in gone:
            self.store.revoke_run_tokens(uid)
        return len(gone)


def secret_name(kind: str, name: str) -> str:
    """The Secret of a Model's or a Session's token, named for the kind too: a Model and a Session may
    share a name in a project (a Run's attempts have their own, the runtime's)."""
    return pods.dns_name(name, f"-{kind.lower()}-token")


def ensure_token_secret(core: Any, res: Resource, tokens: Tokens, labels: dict[str, str]) -> bool:
    """Make the object's token Secret unless it exists: True once it is this object's; False while the name
    is held by another (an earlier object of that name, not yet collected). The token issued for a create
    that finds the Secret there (an operator restarted) was never handed out: it is revoked at once."""
    from runyard.kube.api import translated

    m, name = res.metadata, secret_name(res.kind, res.metadata.name)
    owner = pods.owner_reference({"kind": res.kind, "name": m.name, "uid": res.uid})
    token = tokens.issue(res)
    try:
        with translated():
            core.create_namespaced_secret(
                m.project,
                pods.token_secret_manifest(name, m.project, labels, [owner], token),
                _preload_content=False,
            )
        return True
    except Conflict:
        tokens.discard(token)
        with translated():
            found = json.loads(core.read_namespaced_secret(name, m.project, _preload_content=False).data)
        return any(o.get("uid") == res.uid for o in found["metadata"].get("ownerReferences") or [])


def revoke_deleted(tokens: Tokens | None, res: Resource) -> None:
    """A deleted Model's or Session's token: its Secret goes with it, and the token must not outlive it."""
    if tokens is not None:
        tokens.revoke(res)
