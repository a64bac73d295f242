"""What the jobs CLI tests share besides fixtures: Job documents and polling with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable


def job_yaml(name: str, command: str = "echo ran", **spec: object) -> str:
    """A Job document; `spec` fields as JSON (which is YAML)."""
    body = {**spec, "template": {"command": command, "stopGracePeriodSeconds": 1}}
    doc = {"apiVersion": "runyard.dev/v1", "kind": "Job", "metadata": {"name": name}, "spec": body}
    return json.dumps(doc) + "\n"


def poll(what: Callable[[], object], why: str, timeout: float = 20) -> object:
    """`what()` once it is truthy; fails after `timeout` seconds saying `why`."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, why
        time.sleep(0.05)
