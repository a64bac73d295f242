"""How many replicas a model wants: spec.replicas, or, with autoscaling, ceil(in flight / targetInFlight)
within [minReplicas, maxReplicas], lower only after scaleDownDelaySeconds below, and zero (minReplicas 0)
after scaleToZeroAfterSeconds without a request."""

from __future__ import annotations

import math
from dataclasses import dataclass

from runyard.core.resources import ModelSpec


@dataclass
class ScaleMemory:
    below_since: float | None = None  # monotonic: when the load first asked for fewer than now


def desired_replicas(
    spec: ModelSpec, current: int, in_flight: float, idle_seconds: float, mono: float, memory: ScaleMemory
) -> int:
    """`current`: the replicas desired so far; `idle_seconds`: since the last request (or activation)."""
    auto = spec.autoscaling
    if auto is None:
        return spec.replicas
    if auto.minReplicas == 0 and idle_seconds >= auto.scaleToZeroAfterSeconds:
        memory.below_since = None
        return 0
    want = max(math.ceil(in_flight / auto.targetInFlight), auto.minReplicas, 1)
    want = min(want, auto.maxReplicas)
    if want >= current or current == 0:
        memory.below_since = None
        return want
    if memory.below_since is None:
        memory.below_since = mono
    if mono - memory.below_since < auto.scaleDownDelaySeconds:
        return min(current, auto.maxReplicas)
    memory.below_since = None
    return want
