"""What a model's replicas report, as the API shows it per version (GET .../models/{name}/metrics) and as
Prometheus reads it (GET /metrics): both read Serving.figures(), which the model controller keeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import accumulate

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from runyard.core.resources import Model
from runyard.services.model_keys import find_model
from runyard.serving.protocol import BUCKETS
from runyard.serving.state import Serving, VersionFigures
from runyard.store import Store

QUANTILES = {"p50Ms": 0.5, "p95Ms": 0.95, "p99Ms": 0.99}
LABELS = ["project", "model", "version"]


def figures(serving: Serving | None, model_uid: str) -> dict[int, VersionFigures]:
    return serving.figures(model_uid) if serving is not None else {}


def version_doc(fig: VersionFigures) -> dict:
    doc: dict = {
        "version": fig.version,
        "requests": fig.requests,
        "errors": fig.errors,
        "errorRate": fig.errors / fig.requests if fig.requests else 0.0,
    }
    for key, q in QUANTILES.items():
        seconds = fig.quantile(q) if fig.requests else None
        doc[key] = None if seconds is None else round(seconds * 1000, 3)
    doc.update(replicas=fig.replicas, readyReplicas=fig.ready_replicas, inFlight=fig.in_flight)
    return doc


def model_metrics(store: Store, serving: Serving | None, project: str, name: str) -> dict:
    """Per version: the model's versions (zeros for one that has served nothing here) and any version
    still reporting, newest first."""
    model = find_model(store, project, name)
    seen = figures(serving, model.uid)
    known = {v.version for v in model.status.versions} | set(seen)
    versions = [version_doc(seen.get(n) or VersionFigures(version=n)) for n in sorted(known, reverse=True)]
    return {
        "model": name,
        "currentVersion": model.status.currentVersion,
        "targetVersion": model.status.targetVersion,
        "versions": versions,
    }


class ModelCollector:
    """A prometheus_client collector over every model `visible(project)` lets through; made per scrape,
    so that a project's token sees its project's models only."""

    def __init__(self, store: Store, serving: Serving | None, visible: Callable[[str], bool]):
        self.store, self.serving, self.visible = store, serving, visible

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("runyard_model_requests", "Requests answered", labels=LABELS)
        errors = CounterMetricFamily("runyard_model_errors", "Requests answered with an error", labels=LABELS)
        duration = HistogramMetricFamily(
            "runyard_model_request_duration_seconds", "Time to answer a request", labels=LABELS
        )
        replicas = GaugeMetricFamily("runyard_model_replicas", "Replicas running", labels=LABELS)
        ready = GaugeMetricFamily("runyard_model_ready_replicas", "Replicas ready to serve", labels=LABELS)
        in_flight = GaugeMetricFamily("runyard_model_in_flight", "Requests being answered", labels=LABELS)
        for model in self.store.list(Model):
            if not self.visible(model.metadata.project):
                continue
            for version, fig in sorted(figures(self.serving, model.uid).items()):
                labels = [model.metadata.project, model.metadata.name, str(version)]
                requests.add_metric(labels, fig.requests)
                errors.add_metric(labels, fig.errors)
                duration.add_metric(labels, histogram_buckets(fig), fig.latency_sum)
                replicas.add_metric(labels, fig.replicas)
                ready.add_metric(labels, fig.ready_replicas)
                in_flight.add_metric(labels, fig.in_flight)
        yield from (requests, errors, duration, replicas, ready, in_flight)


def histogram_buckets(fig: VersionFigures) -> list[tuple[str, float]]:
    """Prometheus buckets are cumulative; the replicas count each request in its one bucket."""
    return [(floatToGoString(le), n) for le, n in zip(BUCKETS, accumulate(fig.buckets), strict=True)]
