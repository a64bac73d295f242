"""Experiment tracking: MLflow experiments, runs' metrics, params, tags and inputs (filled in by issue 6)."""

from __future__ import annotations

from runyard.store import Store


class Tracking:
    def __init__(self, store: Store):
        self.store = store
