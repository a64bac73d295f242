"""The node(s) runs go to: capacity, what is allocated, GPUs."""

from __future__ import annotations

from fastapi import APIRouter

from runyard.api.deps import READ, STATE, AppState
from runyard.core.errors import NotFound
from runyard.core.phases import Phase
from runyard.core.resources import Run
from runyard.services.auth import Principal

router = APIRouter(tags=["nodes"])


@router.get("/nodes")
def list_nodes(who: Principal = READ, s: AppState = STATE) -> dict:
    """Each node's capacity, what runs hold of it and its GPUs; a GPU held by a run of a project this
    token may not read shows `run: "(another project)"`."""
    return {"items": [_node(who, s)] if s.node is not None else []}


@router.get("/nodes/{name}")
def get_node(name: str, who: Principal = READ, s: AppState = STATE) -> dict:
    if s.node is None or name != s.node.name:
        raise NotFound(f"node {name!r} not found; `runyard nodes` lists them")
    return _node(who, s)


def _node(who: Principal, s: AppState) -> dict:
    assert s.node is not None
    readable = None if who.role == "admin" or who.project is None else {who.project}
    runs = s.store.count(Run, phases=[Phase.STARTING, Phase.RUNNING], executed_only=True)
    return s.node.describe(s.store, readable, runs)
