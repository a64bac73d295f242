"""What every reconciler needs, and the one way they persist a status change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from runyard.controller.session_support import SessionSupport
from runyard.core.resources import Resource
from runyard.runtime.base import Runtime
from runyard.services.artifacts import ArtifactStore
from runyard.services.environments import Environments
from runyard.services.node import Demand, Node
from runyard.services.notify import Notifier
from runyard.serving.state import Serving
from runyard.settings import ControllerSettings, RuntimeSettings
from runyard.store import R, Store

if TYPE_CHECKING:
    from runyard.controller.jobs.scheduler import Scheduler


class Worker(Protocol):
    """A background worker started and stopped with the controller (it holds the controller lock too)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Context:
    store: Store
    runtime: Runtime
    notifier: Notifier
    settings: ControllerSettings
    api_url: str
    artifacts: ArtifactStore  # a deleted run's artifacts go with it
    runtime_settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    environments: Environments | None = None  # None: every run uses the host's Python
    node: Node | None = None  # None: no capacity is tracked beyond max_running_runs
    scheduler: Scheduler | None = None  # fires jobs; None: no job fires (tests of other kinds)
    workers: list[Worker] = field(default_factory=list)  # e.g. the notification sender
    serving: Serving | None = None  # models' listeners and replica figures; None: no Model is served
    sessions: SessionSupport | None = None  # None: no Session is started (tests of other kinds)
    # Runs to wake, first come first served, when a slot or capacity frees: uid -> what it asks of the node
    # (an ordered dict: the order they came in).
    waiting_for_capacity: dict[str, Demand] = field(default_factory=dict)
    # What save() wrote last, per uid: the loop mirrors a run into its owner without reading it again.
    written: dict[str, Resource] = field(default_factory=dict)

    def save(self, res: R, *events: tuple[str, str] | tuple[str, str, str], final: bool = False) -> R:
        """Write status and its events (optimistically: a stale read raises Conflict and the loop retries).
        `final`: the run has ended, revoke its tokens in the same transaction."""
        saved = self.store.update_status(res, events=events, revoke_run_tokens=final)
        self.written[saved.uid] = saved
        self.notifier.touch(saved.uid, wake_controller=False)
        return saved
