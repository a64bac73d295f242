"""What the server and a model's replica agree on. Standard library only: the replica imports it in the
project's environment, whatever that holds.

A replica is a Run (labels runyard.dev/model and runyard.dev/model-version) whose process is
`python -m runyard.serving.replica`. It serves the model's URL on a listening socket the server owns and
hands it as fd LISTEN_FD, so that every replica of every version accepts on the same socket: a rolling
update or a replica's restart never refuses a connection, and with no replica at all connections wait in
the socket's backlog (scale to zero) until one starts. Its admin endpoints (GET /ready, GET /metrics) are on
an abstract Unix socket named by admin_socket(run_uid, attempt), reachable from the server only.
"""

from __future__ import annotations

LISTEN_FD = 5  # fds 3 and 4 are the sandbox's (block and info); the replica's listener comes next
MODEL_LABEL = "runyard.dev/model"
VERSION_LABEL = "runyard.dev/model-version"

# The replica's environment (besides what every run gets: RUNYARD_API_URL, RUNYARD_TOKEN, RUNYARD_PROJECT,
# RUNYARD_RUN_UID, RUNYARD_ATTEMPT, MLFLOW_TRACKING_URI, ...)
ENV_LISTEN_FD = "RUNYARD_LISTEN_FD"
ENV_MODEL = "RUNYARD_MODEL"  # the Model's name
ENV_VERSION = "RUNYARD_MODEL_VERSION"
ENV_HANDLER = "RUNYARD_MODEL_HANDLER"  # module:function, or
ENV_SOURCE = "RUNYARD_MODEL_SOURCE"  # an MLflow model URI, resolved (runs:/..., models:/NAME/VERSION, a path)
ENV_AUTH_CACHE = "RUNYARD_MODEL_AUTH_CACHE_SECONDS"
ENV_LOG_SAMPLE = "RUNYARD_MODEL_LOG_SAMPLE"  # share of requests whose request and response are logged

# Latency histogram bucket upper bounds, in seconds (the last one is +Inf): fine enough below 10 ms for a
# p50 of a fast model, wide enough for a slow one.
BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"),
)  # fmt: skip


def admin_socket(run_uid: str, attempt: int) -> str:
    """The abstract Unix socket name (leading NUL) of a replica's admin endpoints."""
    return f"\0runyard-replica-{run_uid}-{attempt}"


# GET /metrics on the admin socket answers one JSON object, cumulative since the replica started:
#   {"requests": int, "errors": int, "in_flight": int, "buckets": [int per BUCKETS entry],
#    "latency_sum": float seconds, "started": float epoch, "last_request": float epoch or null}
# GET /ready answers 200 {"ready": true} once the model is loaded, 503 before.
