"""The node's capacity as the controller uses it: refuse what can never fit, reserve before a launch,
say what a queued run waits for, free on release and wake the runs that now fit.

Runs without requests reserve nothing (best effort: they start whenever max_running_runs allows, and
are not counted against cpu or memory); a run that names cpu, memory or GPUs starts only when the node has
that much free. Waiting runs are woken in the order they came; the first that fits goes, so a small
request may pass a large one that waits for more to free up.
"""

from __future__ import annotations

from runyard.controller.context import Context
from runyard.core.phases import Phase
from runyard.core.resources import Run
from runyard.runtime.base import SupportsGPUs
from runyard.services.node import Demand, Node, cores, demand_of, gpus_text, human_bytes
from runyard.store.allocations import Capacity, Holder, NodeUsage

NAMES_SHOWN = 5  # holders named in a waiting message, before "and N more"


def unschedulable(ctx: Context, run: Run) -> str | None:
    """Why no node could ever run it, if so: better a clear failure than a silent wait."""
    demand = demand_of(run.spec.resources)
    if ctx.node is None:  # no node tracked (an embedding without one): only GPUs can be refused
        if demand.gpu and not isinstance(ctx.runtime, SupportsGPUs):
            return f"requests {gpus_text(demand.gpu)}, but the {ctx.runtime.kind} runtime hands out none"
        return None
    return ctx.node.unschedulable(demand)


def reserve(ctx: Context, run: Run) -> Holder | str | None:
    """The run's allocation (atomic in the store, idempotent per run); None when it needs none; else
    the message that says what it waits for."""
    node, demand = ctx.node, demand_of(run.spec.resources)
    if node is None or not demand:
        return None
    m = run.metadata
    # A read first: a waiting run is looked at every tick, and should not take the write lock each time.
    seen = ctx.store.node_usage(node.name)
    if seen.fits(demand, node.capacity) or any(h.uid == run.uid for h in seen.holders):
        got = ctx.store.reserve(node.name, node.capacity, run.uid, m.project, m.name, demand)
        if isinstance(got, Holder):
            return got
        seen = got
    return waiting_message(demand, node.capacity, seen, m.project)


def release(ctx: Context, run: Run) -> None:
    """The attempt ended and the run will be tried again: free what it held meanwhile (its next start
    reserves anew). A run that ends is freed with its final status, in the same transaction."""
    if run.status.allocation is not None or ctx.node is not None:
        ctx.store.release_allocation(run.uid)
    run.status.allocation = None


def wake_waiting(ctx: Context) -> None:
    """Something was freed: wake, in the order they came, the waiting runs that now fit (by what the
    store says is free; each then reserves for real), as many as max_running_runs lets start."""
    waiting = ctx.waiting_for_capacity
    if not waiting:
        return
    active = ctx.store.count(Run, phases=[Phase.STARTING, Phase.RUNNING], executed_only=True)
    slots = ctx.settings.max_running_runs - active
    node = ctx.node
    usage = ctx.store.node_usage(node.name) if node and any(waiting.values()) else None
    for uid, demand in list(waiting.items()):
        if slots <= 0:
            return
        if node and usage is not None and demand:
            if not usage.fits(demand, node.capacity):
                continue
            gpus = tuple(usage.free_gpus(node.capacity)[: demand.gpu])
            usage = usage.plus(Holder(uid, "", "", demand.cpu, demand.memory, gpus))
        del waiting[uid]
        slots -= 1
        ctx.notifier.touch(uid)  # queues it for the controller


def waiting_message(demand: Demand, capacity: Capacity, usage: NodeUsage, project: str) -> str:
    """E.g. "waiting for 1 GPU: 2 of 2 held by run-a, run-b" (and the same for cores and memory)."""
    parts = []
    free_gpus = usage.free_gpus(capacity)
    if demand.gpu > len(free_gpus):
        held = [h for h in usage.holders if h.gpus]
        n = len(capacity.gpus) - len(free_gpus)
        parts.append(f"{gpus_text(demand.gpu)}: {n} of {len(capacity.gpus)} held by {_names(held, project)}")
    if usage.cpu + demand.cpu > capacity.cpu + 1e-6:
        held = [h for h in usage.holders if h.cpu]
        parts.append(
            f"{cores(demand.cpu)}: {usage.cpu:g} of {capacity.cpu:g} held by {_names(held, project)}"
        )
    if usage.memory + demand.memory > capacity.memory:
        held = [h for h in usage.holders if h.memory]
        parts.append(
            f"{human_bytes(demand.memory)} of memory: {human_bytes(usage.memory)} of "
            f"{human_bytes(capacity.memory)} held by {_names(held, project)}"
        )
    return "waiting for " + "; ".join(parts) if parts else "waiting for resources to free up"


def _names(holders: list[Holder], project: str) -> str:
    """The runs of the reader's project by name; others counted, never named."""
    mine = [h.name for h in holders if h.project == project]
    others = len(holders) - len(mine)
    shown = mine[:NAMES_SHOWN]
    if len(mine) > NAMES_SHOWN:
        shown.append(f"{len(mine) - NAMES_SHOWN} more")
    if others:
        shown.append(f"{others} run{'s' if others > 1 else ''} of other projects")
    return ", ".join(shown) if shown else "other runs"


def describe(holder: Holder) -> str:
    """'GPU 1, 2 cores, 512.0 MiB' for events and conditions."""
    parts = []
    if holder.gpus:
        parts.append(("GPUs " if len(holder.gpus) > 1 else "GPU ") + ",".join(map(str, holder.gpus)))
    if holder.cpu:
        parts.append(cores(holder.cpu))
    if holder.memory:
        parts.append(human_bytes(holder.memory))
    return ", ".join(parts)


def gpu_env(node: Node | None, gpus: list[int]) -> dict[str, str]:
    """What tells CUDA (and NVIDIA's container tools) which GPUs are the run's: none when it holds none.

    Real GPUs are named by UUID, as NVIDIA advises: an index means "the i-th device this process can
    open", and in a sandbox that binds only the run's /dev/nvidia<i> the one device it can open is CUDA's
    device 0, whatever its index on the host (so "1" would show it none). A UUID also ignores CUDA's
    device order (fastest first by default, not NVML's PCI order). Simulated GPUs have no UUID: indices,
    in NVML's order (PCI_BUS_ID)."""
    if not gpus:
        return {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    indices = ",".join(map(str, gpus))
    uuids = {g.index: g.uuid for g in node.gpus} if node else {}
    if all(uuids.get(i) for i in gpus):
        return {
            "CUDA_VISIBLE_DEVICES": ",".join(str(uuids[i]) for i in gpus),
            "NVIDIA_VISIBLE_DEVICES": indices,
        }
    return {
        "CUDA_VISIBLE_DEVICES": indices,
        "NVIDIA_VISIBLE_DEVICES": indices,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
