"""The local runtime: runs as processes on this host (see runtime.py)."""

from runyard.runtime.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
