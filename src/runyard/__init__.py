"""runyard: a self-hostable machine-learning platform. `runyard.Client` is the Python SDK.

Importing this package is cheap on purpose: `Client` (and pydantic with it) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.client import Client

__all__ = ["Client", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from runyard.client import Client

        return Client
    raise AttributeError(f"module 'runyard' has no attribute {name!r}")
