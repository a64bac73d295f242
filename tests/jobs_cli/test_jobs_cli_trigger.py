"""`runyard jobs trigger` and `runyard jobs history`, run as users run them against a real server: the run's
name printed, parameters reaching the command, following its logs, a Forbid refusal that names the active
run, and the fires listed newest first."""

from __future__ import annotations

import json

from tests.jobs_cli.jobs_cli_support import job_yaml, poll


def test_trigger_prints_the_run_and_follow_streams_its_logs_with_the_params(srv, cli, apply):
    apply(job_yaml("greet", 'echo "hi $WHO, $MOOD"', concurrencyPolicy="Allow"))
    followed = cli("jobs", "trigger", "greet", "--param", "WHO=cli", "--param", "MOOD=a=b c", "-f")
    assert followed.returncode == 0, followed.stderr
    run, *logs = followed.stdout.splitlines()
    assert run.startswith("greet-") and logs == ["hi cli, a=b c"]
    assert f"job greet triggered: run {run}" in followed.stderr

    printed = cli("jobs", "trigger", "greet", "--param", "WHO=json", "-o", "json")
    assert printed.returncode == 0, printed.stderr
    doc = json.loads(printed.stdout)
    assert doc["kind"] == "Run" and doc["spec"]["env"]["WHO"] == "json"
    assert doc["metadata"]["labels"]["runyard.dev/job"] == "greet"

    keyed = [cli("jobs", "trigger", "greet", "--key", "release-7").stdout.strip() for _ in range(2)]
    assert keyed[0] == keyed[1] and keyed[0].startswith("greet-")

    apply(job_yaml("fails", "echo failing; exit 3"))
    failed = cli("jobs", "trigger", "fails", "--follow")
    assert failed.returncode == 3 and failed.stdout.splitlines()[1:] == ["failing"]


def test_bad_params_and_unknown_jobs_are_reported_with_the_field_or_a_hint(cli, apply):
    apply(job_yaml("picky"))
    malformed = cli("jobs", "trigger", "picky", "--param", "NOEQUALS")
    assert malformed.returncode == 2 and "expected KEY=VALUE" in malformed.stderr
    reserved = cli("jobs", "trigger", "picky", "--param", "RUNYARD_TOKEN=x", "--param", "2X=y")
    assert reserved.returncode == 1 and reserved.stdout == ""
    assert "params.RUNYARD_TOKEN" in reserved.stderr and "params.2X" in reserved.stderr
    for args in (["trigger", "ghost"], ["history", "ghost"], ["suspend", "ghost"], ["secret", "ghost"]):
        missing = cli("jobs", *args)
        assert missing.returncode == 1, args
        assert "job 'ghost' not found in project 'default'" in missing.stderr, missing.stderr
        assert "-p PROJECT" in missing.stderr


def test_forbid_refuses_a_second_run_naming_the_active_one(srv, cli, apply):
    apply(job_yaml("solo", "exec sleep 600"))  # concurrencyPolicy Forbid by default
    first = cli("jobs", "trigger", "solo")
    assert first.returncode == 0, first.stderr
    active = first.stdout.strip()
    refused = cli("jobs", "trigger", "solo")
    assert refused.returncode == 1 and refused.stdout == ""
    assert active in refused.stderr and "concurrencyPolicy" in refused.stderr
    assert "Allow" in refused.stderr and "Replace" in refused.stderr
    srv.client().stop(active)


def test_history_lists_fires_newest_first_with_their_runs_phase_or_removed(srv, cli, apply):
    apply(job_yaml("hist", "echo $N", concurrencyPolicy="Allow"))
    client = srv.client()
    runs = []
    for n in range(3):
        runs.append(client.trigger("hist", {"N": str(n)}).metadata.name)
        client.wait(runs[-1], timeout=30)
    client.delete("runs", runs[0])
    poll(lambda: not [r for r in client.runs() if r.metadata.name == runs[0]], "the run was not removed")

    shown = cli("jobs", "history", "hist")
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.split() == ["WHEN", "TRIGGER", "OUTCOME", "RUN", "PHASE", "MESSAGE"]
    cells = [row.split()[2:6] for row in rows]  # after WHEN's "3s ago"
    assert cells == [
        ["manual", "Created", runs[2], "Succeeded"],
        ["manual", "Created", runs[1], "Succeeded"],
        ["manual", "Created", runs[0], "removed"],
    ]
    assert "triggered by hand with N=2" in rows[0]

    limited = json.loads(cli("jobs", "history", "hist", "--limit", "2", "-o", "json").stdout)
    assert [(f["run"], f["phase"]) for f in limited["items"]] == [
        (runs[2], "Succeeded"),
        (runs[1], "Succeeded"),
    ]
    wide = cli("jobs", "history", "hist", "-o", "wide").stdout.splitlines()[0]
    assert "FIRED AT" in wide and "SCHEDULED FOR" in wide

    apply(job_yaml("never"))
    quiet = cli("jobs", "history", "never")
    assert quiet.returncode == 0 and quiet.stdout == "" and "has not fired yet" in quiet.stderr
