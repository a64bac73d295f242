"""Run phases, their predicates and the table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"  # accepted, not yet admitted
    QUEUED = "Queued"  # admitted, waiting for capacity (or a retry backoff)
    STARTING = "Starting"  # the runtime is launching it
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def can_become(self, other: Phase) -> bool:
        return other in TRANSITIONS[self]


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.QUEUED, Phase.FAILED, Phase.CANCELLED}),
    Phase.QUEUED: frozenset({Phase.STARTING, Phase.FAILED, Phase.CANCELLED}),
    # Starting -> Queued: the launch never began a process and is tried again.
    Phase.STARTING: frozenset({Phase.RUNNING, Phase.QUEUED, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}),
    # Running -> Queued: the attempt failed and the retry policy allows another.
    Phase.RUNNING: frozenset({Phase.QUEUED, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.FAILED: frozenset(),
    Phase.CANCELLED: frozenset(),
}


class Reason(StrEnum):
    """Machine-readable reasons shown in conditions, events and `status.reason`."""

    CREATED = "Created"
    ADMITTED = "Admitted"
    WAITING_FOR_CAPACITY = "WaitingForCapacity"
    LAUNCHING = "Launching"
    STARTED = "Started"
    COMPLETED = "Completed"
    ERROR = "Error"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    STOPPED = "Stopped"
    STOPPING = "Stopping"
    PROCESS_LOST = "ProcessLost"
    LAUNCH_FAILED = "LaunchFailed"
    OUT_OF_MEMORY = "OOMKilled"
    RETRYING = "Retrying"
    ADOPTED = "Adopted"
    NOT_IMPLEMENTED = "ControllerNotAvailable"
    UPDATED = "Updated"
    DELETING = "Deleting"
    STOP_REQUESTED = "StopRequested"
    LIMITS_APPLIED = "LimitsApplied"
    RUN_CREATED = "RunCreated"
    RUN_DELETED = "RunDeleted"
    NAME_TAKEN = "NameTaken"
    UNSCHEDULABLE = "Unschedulable"
    RECONCILE_ERROR = "ReconcileError"
    ENVIRONMENT_BUILDING = "EnvironmentBuilding"
    ENVIRONMENT_READY = "EnvironmentReady"
    ENVIRONMENT_BUILD_FAILED = "EnvironmentBuildFailed"
    ENVIRONMENT_NOT_FOUND = "EnvironmentNotFound"
    WAITING_FOR_RESOURCES = "WaitingForResources"
    UNSANDBOXED = "Unsandboxed"
    FIRED = "Fired"
    FIRE_SKIPPED = "FireSkipped"
    MISSED_SCHEDULE = "MissedSchedule"
    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    DEPENDENCIES_NOT_READY = "DependenciesNotReady"
    NOTIFICATION_FAILED = "NotificationFailed"
    TRIGGERED = "Triggered"  # a person triggered a job by hand (who, and with what)
