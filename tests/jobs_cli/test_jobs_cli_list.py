"""`runyard jobs list`, `suspend`, `resume` and `describe job`, run as users run them against a real server:
the columns come from the jobs' status as the controller writes it (next fire time, last run, active runs),
shown in each job's own time zone."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
from tests.jobs_cli.jobs_cli_support import job_yaml, poll

HEADER = ["NAME", "SCHEDULE", "TIME ZONE", "NEXT FIRE", "LAST RESULT", "SUSPENDED", "ACTIVE"]
BERLIN = ZoneInfo("Europe/Berlin")


def rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by name, cells split where columns are (three spaces or more apart)."""
    header, *lines = stdout.splitlines()
    assert re.split(r" {3,}", header) == HEADER, header
    return {cells[0]: cells for cells in (re.split(r" {3,}", line) for line in lines)}


def status(srv, name: str) -> dict:
    with srv.api() as api:
        return api.get(f"/jobs/{name}").json().get("status") or {}


def test_list_shows_schedule_zone_next_fire_last_result_suspended_and_active(srv, cli, apply):
    apply(
        job_yaml("nightly", "echo nightly", schedule="30 2 * * *", timeZone="Europe/Berlin"),
        job_yaml("after-nightly", "echo after", dependsOn=["nightly"]),
        job_yaml("busy", "exec sleep 600", suspend=True),
    )
    client = srv.client()
    ran = client.trigger("nightly").metadata.name
    client.wait(ran, timeout=30)
    busy = client.trigger("busy").metadata.name
    poll(lambda: status(srv, "busy").get("active") == [busy], "busy's run never showed as active")
    poll(lambda: (status(srv, "nightly").get("lastRun") or {}).get("name") == ran, "no lastRun for nightly")
    poll(lambda: status(srv, "after-nightly").get("lastRun"), "after-nightly did not run after nightly")
    nxt = datetime.fromisoformat(status(srv, "nightly")["nextScheduleTime"])

    listed = cli("jobs", "list")
    assert listed.returncode == 0, listed.stderr
    table = rows(listed.stdout)
    assert list(table) == ["after-nightly", "busy", "nightly"]
    nightly = table["nightly"]
    assert nightly[:4] == [
        "nightly",
        "30 2 * * *",
        "Europe/Berlin",
        nxt.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z"),
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d (02:30|03:00) CES?T", nightly[3]), nightly[3]
    assert re.fullmatch(rf"Succeeded \w+ ago \({ran}\)", nightly[4]), nightly[4]
    assert nightly[5:] == ["no", "0"]
    assert table["after-nightly"][1:4] == ["after nightly", "UTC", "-"]
    assert table["after-nightly"][4].startswith("Succeeded")
    assert table["busy"][1:] == ["manual", "UTC", "-", "-", "yes", "1"]

    as_json = json.loads(cli("jobs", "list", "-o", "json").stdout)
    by_name = {doc["metadata"]["name"]: doc for doc in as_json["items"]}
    assert by_name["busy"]["status"]["active"] == [busy]
    assert by_name["nightly"]["status"]["lastRun"]["name"] == ran
    assert cli("jobs", "list", "-o", "yaml").stdout.startswith("apiVersion: runyard.dev/v1")
    client.stop(busy)

    empty = cli("-p", "nothing-here", "jobs", "list")
    assert empty.returncode == 0 and empty.stdout == "" and "no jobs in project nothing-here" in empty.stderr


def test_suspend_and_resume_set_the_spec_and_the_list_follows(srv, cli, apply):
    apply(job_yaml("pausable", schedule="@hourly"))
    poll(lambda: status(srv, "pausable").get("nextScheduleTime"), "pausable got no next fire time")
    suspended = cli("jobs", "suspend", "pausable")
    assert (suspended.returncode, suspended.stdout) == (0, "job/pausable suspended\n"), suspended.stderr
    with srv.api() as api:
        assert api.get("/jobs/pausable").json()["spec"]["suspend"] is True
    poll(lambda: status(srv, "pausable").get("phase") == "Suspended", "the job never showed Suspended")
    row = rows(cli("jobs", "list").stdout)["pausable"]
    assert (row[3], row[5]) == ("-", "yes")
    assert cli("jobs", "suspend", "pausable").stdout == "job/pausable was suspended already\n"

    resumed = cli("jobs", "resume", "pausable")
    assert (resumed.returncode, resumed.stdout) == (0, "job/pausable resumed\n"), resumed.stderr
    assert re.search(r"next fire: \d{4}-\d\d-\d\d \d\d:00 UTC", resumed.stderr), resumed.stderr
    poll(lambda: status(srv, "pausable").get("nextScheduleTime"), "the resumed job got no next fire time")
    assert rows(cli("jobs", "list").stdout)["pausable"][5] == "no"
    assert cli("jobs", "resume", "pausable").stdout == "job/pausable was not suspended\n"


def test_describe_job_shows_the_next_five_fire_times_in_its_zone_and_utc(srv, cli, apply):
    apply(
        job_yaml("described", schedule="30 2 * * *", timeZone="Europe/Berlin"),
        job_yaml("described-off", schedule="@daily", suspend=True),
    )
    shown = cli("describe", "job", "described")
    assert shown.returncode == 0, shown.stderr
    section = shown.stdout.split("Next fires:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(section) == 5, section
    with srv.api() as api:
        fires = api.get("/jobs/described/schedule").json()["fires"]
    for line, fire in zip(section, fires, strict=True):
        utc = datetime.fromisoformat(fire["utc"])
        local = utc.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z")
        assert line.split() == [*local.split(), *utc.strftime("%Y-%m-%d %H:%M UTC").split()], line
        assert re.search(r" (02:30|03:00) CES?T ", line), line

    as_json = json.loads(cli("describe", "job", "described", "-o", "json").stdout)
    assert [f["utc"] for f in as_json["schedule"]["fires"]] == [f["utc"] for f in fires]
    off = cli("describe", "job", "described-off").stdout
    assert "Next fires:\n  <none>: job 'described-off' is suspended" in off
    assert httpx.get(srv.url + "/healthz").status_code == 200
