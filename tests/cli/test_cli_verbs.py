"""The verbs and messages a new user reaches for, and tables that read well, against a real server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

from tests.cli.helpers import Lines, runyard_cli


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def assert_no_trailing_whitespace(text: str) -> None:
    assert text, "no output"
    bad = [line for line in lines_of(text) if line != line.rstrip()]
    assert not bad, f"lines ending in whitespace: {bad!r}"


def names_in_table(text: str) -> list[str]:
    return [line.split()[0] for line in lines_of(text)[1:]]


def suspended_job(name: str, labels: str = "{}") -> str:
    head = f"apiVersion: runyard.dev/v1\nkind: Job\nmetadata: {{name: {name}, labels: {labels}}}\n"
    return head + "spec: {suspend: true, template: {command: 'true'}}\n"


def start_run(srv, project, *args: str) -> str:
    result = runyard_cli("run", "-d", *args, env=srv.env(), cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# -- messages ----------------------------------------------------------------------------------------------


def test_logs_of_an_unknown_run_speaks_of_the_run_and_how_to_list_runs(srv):
    result = runyard_cli("logs", "nope", env=srv.env())
    assert result.returncode == 1
    assert result.stderr.startswith("error: run 'nope' not found in project 'default'\n"), result.stderr
    assert "Experiment" not in result.stderr and "runyard ps" in result.stderr


def test_stop_of_a_finished_run_says_it_has_finished_and_how(srv, project):
    name = start_run(srv, project, "--cmd", "exit 4")
    srv.client().wait(name, timeout=60)
    result = runyard_cli("stop", name, env=srv.env())
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"run {name} has already finished (Failed); nothing to stop\n"


def test_an_invalid_project_name_is_an_error_naming_the_rule_and_nothing_is_listed(srv):
    result = runyard_cli("-p", "Bad_Proj", "ps", env=srv.env())
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        "error: project 'Bad_Proj' is not a valid name: use lowercase letters, digits and '-'"
        in result.stderr
    )


# -- ps, get: filters, order, wide, long cells ------------------------------------------------------------


def test_ps_filters_by_phase_and_label_and_limits_newest_first(srv, project):
    failed = start_run(srv, project, "-l", "suite=ps", "--cmd", "exit 1")
    first = start_run(srv, project, "-l", "suite=ps", "--cmd", "true")
    second = start_run(srv, project, "-l", "suite=ps", "--cmd", "true")
    start_run(srv, project, "--cmd", "true")  # no label: never listed below
    for name in (failed, first, second):
        srv.client().wait(name, timeout=60)

    labelled = runyard_cli("ps", "-l", "suite=ps", env=srv.env())
    assert names_in_table(labelled.stdout) == [second, first, failed], labelled.stdout
    succeeded = runyard_cli("ps", "-l", "suite=ps", "--phase", "succeeded", env=srv.env())
    assert names_in_table(succeeded.stdout) == [second, first]
    newest = runyard_cli("ps", "-l", "suite=ps", "--limit", "1", "-o", "json", env=srv.env())
    assert [r["metadata"]["name"] for r in json.loads(newest.stdout)["items"]] == [second]
    none = runyard_cli("ps", "-l", "suite=none", env=srv.env())
    assert (none.returncode, none.stdout, none.stderr) == (0, "", "no runs in project default match\n")


def test_get_lists_newest_first_or_by_sort_and_every_table_line_ends_clean(srv, tmp_path):
    for name in ("sort-b", "sort-c", "sort-a"):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(suspended_job(name, "{suite: sort}"))
        assert runyard_cli("apply", "--no-snapshot", "-f", str(spec), env=srv.env()).returncode == 0
    default = runyard_cli("get", "jobs", "-l", "suite=sort", env=srv.env())
    assert names_in_table(default.stdout) == ["sort-a", "sort-c", "sort-b"]
    by_name = runyard_cli("get", "jobs", "-l", "suite=sort", "--sort", "name", env=srv.env())
    assert names_in_table(by_name.stdout) == ["sort-a", "sort-b", "sort-c"]
    as_json = runyard_cli("get", "jobs", "-l", "suite=sort", "--sort", "name", "-o", "json", env=srv.env())
    assert [j["metadata"]["name"] for j in json.loads(as_json.stdout)["items"]] == [
        "sort-a",
        "sort-b",
        "sort-c",
    ]
    bad = runyard_cli("get", "jobs", "--sort", "colour", env=srv.env())
    assert bad.returncode == 1 and "--sort: expected one of name, phase, age" in bad.stderr
    for args in (
        ["get", "jobs"],
        ["get", "jobs", "-o", "wide"],
        ["ps"],
        ["ps", "-o", "wide"],
        ["describe", "job", "sort-a"],
    ):
        result = runyard_cli(*args, env=srv.env())
        assert result.returncode == 0, result.stderr
        assert_no_trailing_whitespace(result.stdout)


def test_a_long_command_is_cut_in_tables_and_whole_with_wide(srv, tmp_path):
    command = "echo " + "x" * 5000 + " && echo\nsecond line"
    spec = tmp_path / "long.yaml"
    doc = {"apiVersion": "runyard.dev/v1", "kind": "Experiment", "metadata": {"name": "long-command"}}
    spec.write_text(json.dumps({**doc, "spec": {"command": command}}))  # JSON is YAML
    assert runyard_cli("apply", "--no-snapshot", "-f", str(spec), env=srv.env()).returncode == 0

    table = runyard_cli("get", "exp", env=srv.env()).stdout
    row = next(line for line in lines_of(table) if line.startswith("long-command"))
    assert row.endswith("…") and len(row) < 120, row
    wide = runyard_cli("get", "exp", "-o", "wide", env=srv.env()).stdout
    row = next(line for line in lines_of(wide) if line.startswith("long-command"))
    assert row.endswith("echo " + "x" * 5000 + " && echo\\nsecond line")  # one line: the newline shown as \n
    header = lines_of(wide)[0].split()
    assert header[:3] == ["NAME", "PHASE", "AGE"] and "LABELS" in header and header[-1] == "COMMAND"


# -- get -w ------------------------------------------------------------------------------------------------


def test_get_watch_has_a_header_and_honours_the_label_selector(srv, project):
    """Runs that exist before the watch come in its first listing; one labelled run made after it has
    printed the first shows the listing is over, so the unlabelled one was left out, not late."""
    before = start_run(srv, project, "-l", "suite=watch", "--cmd", "true")
    other = start_run(srv, project, "--cmd", "true")
    argv = [sys.executable, "-m", "runyard", "get", "runs", "-w", "-l", "suite=watch"]
    watcher = subprocess.Popen(argv, env=srv.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(watcher.stdout, deadline=time.monotonic() + 60)
        assert lines.next().split() == ["EVENT", "NAME", "PHASE", "REASON"]
        seen = [lines.next()]
        assert seen[0].split()[:2] == ["ADDED", before]
        after = start_run(srv, project, "-l", "suite=watch", "--cmd", "true")
        while seen[-1].split()[1:3] != [after, "Succeeded"]:
            seen.append(lines.next())
        assert all(line.split()[1] in (before, after) for line in seen), seen
        assert other not in "".join(seen)
        assert_no_trailing_whitespace("".join(seen))
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0
    finally:
        watcher.kill()
        watcher.wait()


# -- delete -f, projects, tokens ---------------------------------------------------------------------------


def test_delete_f_deletes_what_each_document_names_and_reports_what_was_not_there(srv, tmp_path):
    spec = tmp_path / "two.yaml"
    model = "apiVersion: runyard.dev/v1\nkind: Model\nmetadata: {name: del-model}\nspec: {handler: 'a:b'}\n"
    spec.write_text(suspended_job("del-job") + "---\n" + model)
    assert runyard_cli("apply", "--no-snapshot", "-f", str(spec), env=srv.env()).returncode == 0
    deleted = runyard_cli("delete", "-f", str(spec), env=srv.env())
    assert (deleted.returncode, deleted.stdout) == (0, "job/del-job deleted\nmodel/del-model deleted\n")
    again = runyard_cli("delete", "-f", str(spec), env=srv.env())
    assert again.returncode == 1
    assert "error: job/del-job: " in again.stderr and "error: model/del-model: " in again.stderr


def test_projects_lists_and_creates_and_a_second_create_is_an_error(srv):
    created = runyard_cli("projects", "create", "vision", env=srv.env())
    assert (created.returncode, created.stdout) == (0, "project/vision created\n"), created.stderr
    again = runyard_cli("projects", "create", "vision", env=srv.env())
    assert again.returncode == 1 and again.stderr.startswith("error: ")
    listed = runyard_cli("projects", env=srv.env())
    assert lines_of(listed.stdout)[0].split() == ["NAME", "AGE"]
    assert {"vision", "default"} <= set(names_in_table(listed.stdout))
    assert_no_trailing_whitespace(listed.stdout)


def test_a_token_is_created_with_its_secret_shown_once_used_listed_and_revoked(srv):
    created = runyard_cli("tokens", "create", "--name", "ci", "--role", "viewer", env=srv.env())
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret and "shown this once" in created.stderr
    token_id = created.stderr.split()[1]
    as_viewer = {**srv.env(), "RUNYARD_TOKEN": secret}
    assert runyard_cli("ps", env=as_viewer).returncode == 0
    assert runyard_cli("projects", "create", "nope", env=as_viewer).returncode == 1  # a viewer only reads

    listed = runyard_cli("tokens", "-o", "json", env=srv.env())
    mine = next(t for t in json.loads(listed.stdout)["items"] if t["id"] == token_id)
    assert (mine["name"], mine["role"], mine["revoked"]) == ("ci", "viewer", False)
    assert secret not in listed.stdout
    table = runyard_cli("tokens", env=srv.env()).stdout
    assert lines_of(table)[0].split() == ["ID", "NAME", "ROLE", "PROJECT", "AGE", "REVOKED"]

    revoked = runyard_cli("tokens", "revoke", token_id, env=srv.env())
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    refused = runyard_cli("ps", env=as_viewer)
    assert refused.returncode == 1 and "hint: pass --token" in refused.stderr


# -- logs --tail, --since ----------------------------------------------------------------------------------


def test_logs_tail_and_since_show_the_end_or_what_came_after_a_time(srv, project):
    name = start_run(srv, project, "--cmd", "for i in 1 2 3 4 5; do echo line$i; sleep 0.05; done")
    srv.client().wait(name, timeout=60)

    def entries(*args: str) -> list[dict]:
        result = runyard_cli("logs", name, "-o", "json", *args, env=srv.env())
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in lines_of(result.stdout)]

    every = entries()
    assert [e["text"] for e in every if e["stream"] == "stdout"] == [f"line{i}" for i in range(1, 6)]
    assert entries("--tail", "2") == every[-2:]
    assert entries("--tail", "2", "--follow") == every[-2:]  # the run has ended: the end, then exit
    third = next(e for e in every if e["text"] == "line3")
    since = datetime.fromisoformat(third["time"])
    assert entries("--since", third["time"]) == [
        e for e in every if datetime.fromisoformat(e["time"]) >= since
    ]
    assert entries("--since", "10m") == every
    assert entries("--since", (since + timedelta(hours=1)).isoformat()) == []


def test_revoking_an_unknown_token_says_how_to_find_the_ids(srv):
    result = runyard_cli("tokens", "revoke", "nope", env=srv.env())
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "hint: `runyard tokens` lists the tokens" in result.stderr
