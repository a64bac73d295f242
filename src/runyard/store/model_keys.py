"""Model access keys: per model, stored hashed (sha256); the plain key is shown once, at creation."""

from __future__ import annotations

from runyard.store.base import StoreBase


class ModelKeyStore(StoreBase):
    pass
