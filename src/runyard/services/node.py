"""The local node: its capacity (cpu, memory, GPUs) and what runs hold of it.

Capacity is discovered once at start: every core this process may use and the host's memory, or less when
RUNYARD_RUNTIME_NODE_CPU / NODE_MEMORY say so (never more: a value above the host's stops the server);
GPUs from NVML or a simulated inventory (services/gpus.py), the first NODE_GPUS of them when set.
What runs hold is kept in the store (store/allocations.py), so it survives a restart.
"""

from __future__ import annotations

import os

import psutil

from runyard.core.errors import FieldError, Invalid
from runyard.core.quantities import parse_memory
from runyard.core.resources import ComputeResources
from runyard.services.gpus import Gpu, GpuInventory
from runyard.settings import RuntimeSettings, env_name
from runyard.store import Store
from runyard.store.allocations import EPSILON, Capacity, Demand, NodeUsage

LOCAL = "local"


def demand_of(res: ComputeResources) -> Demand:
    """What a run's resources ask of the node (nothing of what it leaves unnamed)."""
    return Demand(res.cpu_cores or 0.0, res.memory_bytes or 0, res.gpu)


def human_bytes(n: float) -> str:
    """512 B, 1.5 KiB, 23.4 GiB, 1000.0 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def cores(n: float) -> str:
    return f"{n:g} core" + ("" if n == 1 else "s")


def gpus_text(n: int) -> str:
    return f"{n} GPU" + ("" if n == 1 else "s")


class Node:
    """What this node offers runs, discovered once (NVML for GPUs, or a simulated inventory)."""

    name = LOCAL

    def __init__(self, settings: RuntimeSettings, inventory: GpuInventory | None = None):
        """Raises Invalid naming the setting when one asks for more than the host has or cannot be read."""
        problems: list[FieldError] = []
        self.host_cpu = float(len(os.sched_getaffinity(0)))
        self.host_memory = psutil.virtual_memory().total
        self.cpu = self._cpu(settings, problems)
        self.memory = self._memory(settings, problems)
        if inventory is None:
            try:
                inventory = GpuInventory.discover(settings.simulated_gpus)
            except ValueError as exc:
                problems.append(FieldError(env_name(RuntimeSettings, "simulated_gpus"), str(exc)))
                inventory = GpuInventory([], "none", "the simulated inventory is invalid")
        self.inventory = inventory
        self.gpus: list[Gpu] = self._offered(settings, inventory, problems)
        if problems:
            inventory.close()
            raise Invalid("invalid server settings", problems)

    def _cpu(self, settings: RuntimeSettings, problems: list[FieldError]) -> float:
        if settings.node_cpu is None:
            return self.host_cpu
        if settings.node_cpu > self.host_cpu + EPSILON:
            problems.append(
                FieldError(
                    env_name(RuntimeSettings, "node_cpu"),
                    f"{settings.node_cpu:g} cores is more than this host offers ({self.host_cpu:g}); "
                    "set it lower or leave it unset",
                )
            )
        return settings.node_cpu

    def _memory(self, settings: RuntimeSettings, problems: list[FieldError]) -> int:
        name = env_name(RuntimeSettings, "node_memory")
        if settings.node_memory is None:
            return self.host_memory
        try:
            memory = parse_memory(settings.node_memory)
        except ValueError as exc:
            problems.append(FieldError(name, str(exc)))
            return self.host_memory
        if memory > self.host_memory:
            problems.append(
                FieldError(
                    name,
                    f"{settings.node_memory} ({human_bytes(memory)}) is more than this host's memory "
                    f"({human_bytes(self.host_memory)}); set it lower or leave it unset",
                )
            )
        return memory

    @staticmethod
    def _offered(settings: RuntimeSettings, inventory: GpuInventory, problems: list[FieldError]) -> list[Gpu]:
        if settings.node_gpus is None:
            return list(inventory.gpus)
        if settings.node_gpus > len(inventory.gpus):
            found = f"{len(inventory.gpus)} were found" + (f" ({inventory.note})" if inventory.note else "")
            problems.append(
                FieldError(
                    env_name(RuntimeSettings, "node_gpus"),
                    f"{settings.node_gpus} GPUs cannot be offered: {found}; set it lower or leave it unset",
                )
            )
        return list(inventory.gpus[: settings.node_gpus])

    @property
    def capacity(self) -> Capacity:
        return Capacity(self.cpu, self.memory, tuple(g.index for g in self.gpus))

    def unschedulable(self, demand: Demand) -> str | None:
        """Why this node could never run it, even empty; None when it fits an empty node."""
        if demand.cpu > self.cpu + EPSILON:
            return (
                f"requests cpu {demand.cpu:g} cores, but the node offers {self.cpu:g} "
                f"({env_name(RuntimeSettings, 'node_cpu')})"
            )
        if demand.memory > self.memory:
            return (
                f"requests memory {human_bytes(demand.memory)}, but the node offers "
                f"{human_bytes(self.memory)} ({env_name(RuntimeSettings, 'node_memory')})"
            )
        if demand.gpu > len(self.gpus):
            return f"requests {gpus_text(demand.gpu)}, but {self._gpu_offer()}"
        return None

    def _gpu_offer(self) -> str:
        limit = env_name(RuntimeSettings, "node_gpus")
        found = len(self.inventory.gpus)
        if self.gpus:
            why = f"{limit} offers {len(self.gpus)} of {found}" if len(self.gpus) < found else None
            return f"the node offers {len(self.gpus)}" + (f" ({why})" if why else "")
        if found:
            return f"the node offers none ({limit}=0 of the {found} found)"
        simulated = env_name(RuntimeSettings, "simulated_gpus")
        note = self.inventory.note or "NVML found none"
        return f"the node has none ({note}; {simulated} for tests)"

    def describe(self, store: Store, readable: set[str] | None, runs: int) -> dict:
        """The API's document of this node. `readable`: projects whose run names the caller may see
        (None: all of them); a GPU held by another project's run says so without naming it."""
        usage = store.node_usage(self.name)
        util = self.inventory.utilization()
        gpus = []
        for g in self.gpus:
            item = {
                "index": g.index,
                "model": g.model,
                "memoryBytes": g.memory_bytes,
                "uuid": g.uuid,
                "utilization": util.get(g.index),
                "simulated": g.simulated,
                "run": None,
            }
            holder = usage.gpu_holders.get(g.index)
            if holder is not None and (readable is None or holder.project in readable):
                item.update(run=holder.name, project=holder.project)
            elif holder is not None:
                item["run"] = "(another project)"
            gpus.append(item)
        capacity = {"cpu": self.cpu, "memory": self.memory, "gpu": len(self.gpus)}
        doc = {
            "name": self.name,
            "capacity": capacity,
            "allocatable": dict(capacity),
            "allocated": {"cpu": round(usage.cpu, 6), "memory": usage.memory, "gpu": len(usage.gpu_holders)},
            "gpus": gpus,
            "gpuSource": self.inventory.source,
            "runs": runs,
        }
        if self.inventory.note and not self.gpus:
            doc["gpuNote"] = self.inventory.note
        return doc

    def close(self) -> None:
        self.inventory.close()


__all__ = ["Demand", "Node", "NodeUsage", "cores", "demand_of", "gpus_text", "human_bytes"]
