"""A Model's replicas as Runs: how one is made for a version, and the listening socket its launch gets."""

from __future__ import annotations

import secrets

from runyard.controller.context import Context
from runyard.controller.owned_runs import request_stop
from runyard.core.phases import Reason
from runyard.core.resources import Model, ModelSpec, ModelVersion, ObjectMeta, OwnerReference, Run, RunSpec
from runyard.serving import protocol
from runyard.settings import ServingSettings

LISTENER_ANNOTATION = "runyard.dev/listener"  # the listener its server held when it was made
COMMAND = ["python", "-m", "runyard.serving.replica"]


def model_of(run: Run) -> OwnerReference | None:
    if protocol.MODEL_LABEL not in run.metadata.labels:
        return None
    return next((o for o in run.metadata.ownerReferences if o.kind == "Model"), None)


def version_of(run: Run) -> int:
    return int(run.metadata.labels.get(protocol.VERSION_LABEL, "0"))


def listen_fd(ctx: Context, run: Run) -> int | None:
    """The fd of the owning model's listener, for a replica's launch; None for any other run. After a
    restart the run may launch before its model is reconciled: the model's recorded port is bound then."""
    owner = model_of(run)
    if owner is None or ctx.serving is None:
        return None
    model = ctx.store.get_uid(owner.uid)
    port = model.status.port if isinstance(model, Model) else None
    return ctx.serving.listener(owner.uid, port).fileno()


def replica_spec(model: Model, version: ModelVersion, settings: ServingSettings) -> RunSpec:
    """What a replica of `version` runs, whichever controller starts it: the replica's command, its
    settings in its environment, the version's snapshot and environment."""
    spec = ModelSpec(**version.spec)
    env = {
        **spec.env,
        protocol.ENV_LISTEN_FD: str(protocol.LISTEN_FD),
        protocol.ENV_MODEL: model.metadata.name,
        protocol.ENV_VERSION: str(version.version),
        protocol.ENV_AUTH_CACHE: f"{settings.auth_cache_seconds:g}",
        protocol.ENV_LOG_SAMPLE: f"{spec.requestLogging.sampleRate:g}",
    }
    if spec.handler:
        env[protocol.ENV_HANDLER] = spec.handler
    else:
        env[protocol.ENV_SOURCE] = version.source or spec.modelUri or ""
    return RunSpec(
        command=COMMAND,
        env=env,
        environment=spec.environment,
        resources=spec.resources,
        snapshot=version.snapshot,
        stopGracePeriodSeconds=settings.drain_seconds,
    )


def create_replica(ctx: Context, model: Model, version: ModelVersion) -> Run:
    serving = ctx.serving
    assert serving is not None
    m, settings = model.metadata, serving.settings
    name = f"{m.name[:45].rstrip('-')}-v{version.version}-{secrets.token_hex(3)}"
    run = Run(
        metadata=ObjectMeta(
            name=name,
            project=m.project,
            labels={protocol.MODEL_LABEL: m.name, protocol.VERSION_LABEL: str(version.version)},
            annotations={LISTENER_ANNOTATION: serving.listener_token(model.uid) or ""},
            ownerReferences=[OwnerReference(kind="Model", name=m.name, uid=m.uid)],
        ),
        spec=replica_spec(model, version, settings),
    )
    created = ctx.store.create(
        run, events=[(Reason.CREATED, f"replica of Model {m.name} version {version.version}")]
    )
    ctx.notifier.touch(created.uid)  # the run controller launches it
    return created


def stop_replica(ctx: Context, run: Run, why: str) -> None:
    """Drain it: SIGTERM (it stops accepting and finishes what it holds), SIGKILL after drain_seconds."""
    request_stop(ctx, run, why)
