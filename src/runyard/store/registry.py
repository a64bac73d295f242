"""The model registry (MLflow-compatible): registered models, their versions, aliases and tags."""

from __future__ import annotations

from runyard.store.base import StoreBase


class RegistryStore(StoreBase):
    pass
