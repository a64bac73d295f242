"""What the jobs CLI tests share besides fixtures: Job documents and polling with a deadline."""

from __future__ import annotations

import json

from tests.support import until as poll  # noqa: F401 - the name these tests import


def job_yaml(name: str, command: str = "echo ran", **spec: object) -> str:
    """A Job document; `spec` fields as JSON (which is YAML)."""
    body = {**spec, "template": {"command": command, "stopGracePeriodSeconds": 1}}
    doc = {"apiVersion": "runyard.dev/v1", "kind": "Job", "metadata": {"name": name}, "spec": body}
    return json.dumps(doc) + "\n"
