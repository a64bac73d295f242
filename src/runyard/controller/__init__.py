"""The controller (operator): level-triggered reconcilers, one per kind, that drive Runs on a runtime."""
