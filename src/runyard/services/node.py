"""The local node: its capacity (cpu, memory, GPUs) and what runs hold of it. STUB (issue 7)."""

from __future__ import annotations


class Node:
    """What this node offers runs, discovered once (NVML for GPUs, or a simulated inventory)."""
