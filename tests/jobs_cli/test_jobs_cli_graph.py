"""`runyard jobs graph` against a real server: the project's dependsOn pipelines drawn as trees, a job
with several upstream jobs drawn once and pointed to after, a dependency on no existing job shown missing."""

from __future__ import annotations

import json

from tests.jobs_cli.jobs_cli_support import job_yaml

EXPECTED = """\
ghost (missing: no such job in the project)
└── load  also after transform
extract  30 2 * * * (Europe/Berlin)
├── report  also after transform
└── transform
    ├── load ↑ drawn above
    └── report ↑ drawn above
solo  suspended
"""


def test_graph_draws_each_pipeline_from_its_roots(cli, apply):
    apply(
        job_yaml("extract", schedule="30 2 * * *", timeZone="Europe/Berlin"),
        job_yaml("transform", dependsOn=["extract"]),
        job_yaml("report", dependsOn=["transform", "extract"]),
        job_yaml("load", dependsOn=["transform", "ghost"]),
        job_yaml("solo", suspend=True),
    )
    drawn = cli("jobs", "graph")
    assert drawn.returncode == 0, drawn.stderr
    assert "\n".join(line.rstrip() for line in drawn.stdout.splitlines()) + "\n" == EXPECTED

    data = json.loads(cli("jobs", "graph", "-o", "json").stdout)
    assert data["missing"] == ["ghost"] and data["roots"] == ["ghost", "extract", "solo"]
    edges = {(e["from"], e["to"]) for e in data["edges"]}
    assert edges == {
        ("extract", "transform"),
        ("transform", "report"),
        ("extract", "report"),
        ("transform", "load"),
        ("ghost", "load"),
    }
    assert {n["name"]: n["suspended"] for n in data["nodes"]}["solo"] is True

    empty = cli("-p", "no-pipelines", "jobs", "graph")
    assert empty.returncode == 0 and empty.stdout == "" and "no jobs in project no-pipelines" in empty.stderr
