"""The server's side of serving: each model's listening socket (held here for the model's life, handed to
its replicas) and the figures read from its replicas (for the autoscaler, the API, `runyard models status`
and Prometheus)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from runyard.serving.protocol import BUCKETS
from runyard.settings import ServingSettings


@dataclass
class VersionFigures:
    """One version of one model, summed over its replicas, cumulative since this server started watching
    (a replica's restart does not set the counts back)."""

    version: int
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    latency_sum: float = 0.0
    replicas: int = 0
    ready_replicas: int = 0

    def quantile(self, q: float) -> float | None:
        """Seconds, from the histogram (the upper bound of the bucket the q-th request falls in, linearly
        interpolated inside it); None before the first request."""
        raise NotImplementedError


class Serving:
    def __init__(self, settings: ServingSettings | None = None) -> None:
        self.settings = settings or ServingSettings()

    def listener(self, model_uid: str, port: int | None) -> socket.socket:
        """The model's listening socket: the one held, or a new one bound to `port` (its recorded port,
        so that the URL survives a restart; any free port when None or taken)."""
        raise NotImplementedError

    def close(self, model_uid: str) -> None:
        """The model is gone: stop listening."""
        raise NotImplementedError

    def url(self, port: int) -> str:
        host = self.settings.public_host or self.settings.host
        return f"http://{host}:{port}"

    def figures(self, model_uid: str) -> dict[int, VersionFigures]:
        """Per version, what its replicas said last; empty for a model never served here."""
        raise NotImplementedError
