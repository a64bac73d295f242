"""The Model reconciler: versions, replicas (Runs), rolling updates, autoscaling, scale to zero."""

from __future__ import annotations

from runyard.controller.context import Context
from runyard.core.resources import Model


def reconcile_model(ctx: Context, model: Model) -> float | None:
    """Bring the model's replicas to what its spec and load ask for. Returns seconds until it wants to be
    looked at again (probes, autoscaling), or None."""
    raise NotImplementedError
