"""`python -m tests.jobs.warp server …`: the real runyard server, but its job scheduler reads a warped clock
(RUNYARD_TEST_WARP="START_ISO,REAL_EPOCH,SPEED": at real time REAL_EPOCH it is START_ISO, and it runs SPEED
times faster), so that tests see schedules fire every few seconds instead of every minute. Everything else
in the process, run timeouts included, keeps the real clock. The same settings give the same warped time
after a restart, so a test can kill -9 and restart such a server mid-schedule."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from runyard.controller.jobs import scheduler


def warp_env(start: datetime, speed: float, real_epoch: float | None = None) -> dict[str, str]:
    """The environment entries that warp a server's scheduler clock (pass them with os.environ)."""
    epoch = time.time() if real_epoch is None else real_epoch
    return {"RUNYARD_TEST_WARP": f"{start.astimezone(UTC).isoformat()},{epoch!r},{speed!r}"}


def warped_now(setting: str, real: float | None = None) -> datetime:
    """The warped time that `setting` (RUNYARD_TEST_WARP's value) gives at real time `real` (now)."""
    start, epoch, speed = setting.split(",")
    elapsed = (time.time() if real is None else real) - float(epoch)
    return datetime.fromisoformat(start) + timedelta(seconds=elapsed * float(speed))


def main() -> None:
    setting = os.environ["RUNYARD_TEST_WARP"]
    scheduler.CLOCK = lambda: warped_now(setting)
    from runyard.cli.main import main as runyard_main

    runyard_main()


if __name__ == "__main__":
    main()
