"""runyard: a self-hostable machine-learning platform. `runyard.Client` is the Python SDK; `log_metric` and
its siblings track the run this code executes in (or one opened by `start_run`).

Importing this package is cheap on purpose: `Client` (and pydantic with it) loads on first use, and so does
the tracking module, which needs nothing beyond the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.client import Client
    from runyard.tracking import (
        log_artifact,
        log_artifacts,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        set_tag,
        set_tags,
        start_run,
    )

__all__ = [
    "Client",
    "__version__",
    "log_artifact",
    "log_artifacts",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "start_run",
]
_TRACKING = frozenset(__all__[2:])
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from runyard.client import Client

        return Client
    if name in _TRACKING:
        from runyard import tracking

        value = globals()[name] = getattr(tracking, name)  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'runyard' has no attribute {name!r}")
