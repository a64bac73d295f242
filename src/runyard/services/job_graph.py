"""The dependsOn graph of a project's jobs: a job that would close a cycle is refused when it is applied,
since no job on a cycle could ever fire after its dependencies."""

from __future__ import annotations

from collections import deque

from runyard.core.errors import FieldError, Invalid, NotFound
from runyard.core.resources import Job
from runyard.store import Store


def check_no_cycle(store: Store, job: Job) -> None:
    """Raise Invalid naming the cycle (a -> b -> a) that `job`, as it is about to be stored, would close.

    Only this job's edges are new, so any new cycle runs through it: a breadth-first walk from its
    dependencies back to it finds the shortest one, reading only the jobs it reaches (a project of
    thousands of jobs without dependencies costs nothing)."""
    name, project = job.metadata.name, job.metadata.project
    if not job.spec.dependsOn:
        return
    parent: dict[str, str] = {}
    queue: deque[str] = deque()
    for dep in dict.fromkeys(job.spec.dependsOn):
        if dep == name:
            _refuse([name, name])
        parent[dep] = name
        queue.append(dep)
    while queue:
        current = queue.popleft()
        for dep in _depends_on(store, project, current):
            if dep == name:
                chain = [current]
                while parent[chain[-1]] != name:
                    chain.append(parent[chain[-1]])
                _refuse([name, *reversed(chain), name])
            if dep not in parent:
                parent[dep] = current
                queue.append(dep)


def _depends_on(store: Store, project: str, name: str) -> list[str]:
    try:
        return store.get(Job, project, name).spec.dependsOn
    except NotFound:  # a missing dependency closes no cycle (the job's status says it is missing)
        return []


def _refuse(cycle: list[str]) -> None:
    text = " -> ".join(cycle)
    raise Invalid(
        f"the job's dependencies would form a cycle ({text}); no job on it could ever fire",
        [FieldError("spec.dependsOn", f"would form a cycle: {text}; remove one of these dependencies")],
    )
