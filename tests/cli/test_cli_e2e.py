"""The CLI as users run it, a separate process, against a real `runyard server` (and the embedded one)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from tests.cli.helpers import Lines, base_env, experiment_yaml, runyard_cli

from runyard.core.errors import Invalid
from runyard.embedded import stop_server


def test_run_prints_the_output_and_exits_0(srv, project):
    result = runyard_cli("run", "--cmd", "echo hello", env=srv.env(), cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert "submitted" in result.stderr


def test_run_exits_with_the_commands_exit_code(srv, project):
    result = runyard_cli("run", "--cmd", "echo oops >&2; exit 3", env=srv.env(), cwd=project)
    assert result.returncode == 3
    assert "oops" in result.stderr and "oops" not in result.stdout


def test_the_run_sees_the_project_files_but_not_the_git_ignored_ones(srv, project):
    command = "cat data.txt; test -e secret.txt && echo secret-present || echo secret-absent"
    result = runyard_cli("run", "--cmd", command, env=srv.env(), cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["the data", "secret-absent"]


def test_detach_prints_the_name_and_logs_follow_shows_the_output_later(srv, project):
    result = runyard_cli("run", "-d", "--cmd", "sleep 0.5; echo later", env=srv.env(), cwd=project)
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert name.startswith("run-") and len(name) == 10
    logs = runyard_cli("logs", "-f", name, env=srv.env())
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "later\n"


def test_apply_then_get_lists_it_and_yaml_round_trips(srv, tmp_path):
    spec = tmp_path / "exp.yaml"
    spec.write_text(experiment_yaml("applied-one"))
    first = runyard_cli("apply", "-f", str(spec), env=srv.env())
    assert (first.returncode, first.stdout) == (0, "experiment/applied-one created\n"), first.stderr
    listed = json.loads(runyard_cli("get", "experiments", "-o", "json", env=srv.env()).stdout)
    assert "applied-one" in [item["metadata"]["name"] for item in listed["items"]]
    exported = runyard_cli("get", "exp", "applied-one", "-o", "yaml", env=srv.env()).stdout
    again = runyard_cli("apply", "-f", "-", env=srv.env(), stdin=exported)
    assert again.stdout == "experiment/applied-one unchanged\n", again.stderr


def test_apply_of_an_invalid_spec_prints_the_field_and_reason(srv, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(experiment_yaml("bad-one").replace("spec: {", "spec: {timeoutSeconds: -5, "))
    result = runyard_cli("apply", "-f", str(spec), env=srv.env())
    assert result.returncode == 1
    assert "  spec.timeoutSeconds: " in result.stderr and "greater than 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_server_rejects_an_invalid_spec_with_field_paths_through_the_client(srv):
    doc = {
        "apiVersion": "runyard.dev/v1",
        "kind": "Experiment",
        "metadata": {"name": "x"},
        "spec": {"command": ""},
    }
    with pytest.raises(Invalid) as caught:
        srv.client().apply(doc)
    assert [d.field for d in caught.value.details] == ["spec.command"]


def test_describe_shows_the_events(srv, tmp_path):
    spec = tmp_path / "exp.yaml"
    spec.write_text(experiment_yaml("described"))
    assert runyard_cli("apply", "-f", str(spec), env=srv.env()).returncode == 0
    srv.client().wait("described", timeout=30)
    result = runyard_cli("describe", "run", "described", env=srv.env())
    assert result.returncode == 0, result.stderr
    assert "Events:" in result.stdout
    assert "Started" in result.stdout and "Completed" in result.stdout


def test_stop_cancels_a_running_run(srv, project):
    started = runyard_cli("run", "-d", "--name", "stop-me", "--cmd", "sleep 30", env=srv.env(), cwd=project)
    assert started.returncode == 0, started.stderr
    stopped = runyard_cli("stop", "stop-me", "--wait", env=srv.env())
    assert stopped.returncode == 0, stopped.stderr
    run = json.loads(runyard_cli("get", "runs", "stop-me", "-o", "json", env=srv.env()).stdout)
    assert run["status"]["phase"] == "Cancelled"
    ps = runyard_cli("ps", env=srv.env())
    assert "stop-me" in ps.stdout and "Cancelled" in ps.stdout


def test_ctrl_c_without_a_terminal_stops_the_run_and_exits_130(srv, project):
    argv = [
        sys.executable,
        "-m",
        "runyard",
        "run",
        "--name",
        "interrupted",
        "--cmd",
        "echo started; sleep 30",
    ]
    pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    cli = subprocess.Popen(argv, env=srv.env(), cwd=project, text=True, **pipes)
    try:
        assert cli.stdout.readline() == "started\n"
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=30) == 130
    finally:
        if cli.poll() is None:
            cli.kill()
    assert "stopping run interrupted" in cli.stderr.read()
    assert cli.stdout.read() == ""  # following went on after Ctrl-C, without printing "started" again
    assert srv.client().get("runs", "interrupted").status.phase == "Cancelled"


def test_a_wrong_token_is_one_readable_error(srv):
    result = runyard_cli("get", "experiments", env={**srv.env(), "RUNYARD_TOKEN": "wrong"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_without_a_server_the_embedded_one_starts_once_and_is_reused(tmp_path, project):
    home = tmp_path / "home"
    try:
        first = runyard_cli("--home", str(home), "run", "--cmd", "echo hi", env=base_env(), cwd=project)
        assert (first.returncode, first.stdout) == (0, "hi\n"), first.stderr
        pid = json.loads((home / "server.json").read_text())["pid"]
        second = runyard_cli("--home", str(home), "run", "--cmd", "echo again", env=base_env(), cwd=project)
        assert (second.returncode, second.stdout) == (0, "again\n"), second.stderr
        assert json.loads((home / "server.json").read_text())["pid"] == pid
        down = runyard_cli("--home", str(home), "down", env=base_env())
        assert down.returncode == 0 and f"pid {pid}" in down.stderr
        assert not (home / "server.json").exists()
    finally:
        stop_server(home)


def test_logs_and_describe_speak_json_and_yaml_too(srv, project):
    name = runyard_cli(
        "run", "-d", "--cmd", "echo out; echo err >&2", env=srv.env(), cwd=project
    ).stdout.strip()
    srv.client().wait(name, timeout=30)
    entries = [
        json.loads(line)
        for line in runyard_cli("logs", name, "-o", "json", env=srv.env()).stdout.splitlines()
    ]
    written = [(e["stream"], e["text"]) for e in entries if e["stream"] != "system"]
    assert written == [("stdout", "out"), ("stderr", "err")]
    assert all(e["time"] for e in entries)
    described = json.loads(runyard_cli("describe", "run", name, "-o", "json", env=srv.env()).stdout)
    assert described["object"]["status"]["phase"] == "Succeeded"
    assert [e["reason"] for e in described["events"]][-1] == "Completed"
    as_yaml = runyard_cli("describe", "run", name, "-o", "yaml", env=srv.env()).stdout
    assert as_yaml.startswith("object:\n")


def test_get_watch_prints_each_change_until_ctrl_c(srv, project):
    """The watch is known to be listening (it printed a run that existed before it started) before the
    watched run is created, so that run's whole life arrives as changes: ADDED, then MODIFIED to the end."""
    ready = runyard_cli("run", "--name", "watch-ready", "--cmd", "true", env=srv.env(), cwd=project)
    assert ready.returncode == 0, ready.stderr
    argv = [sys.executable, "-m", "runyard", "get", "runs", "-w", "-o", "json"]
    watcher = subprocess.Popen(argv, env=srv.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(watcher.stdout, deadline=time.monotonic() + 60)
        while json.loads(lines.next())["object"]["metadata"]["name"] != "watch-ready":
            pass
        started = runyard_cli(
            "run", "-d", "--name", "watched-run", "--cmd", "true", env=srv.env(), cwd=project
        )
        assert started.returncode == 0, started.stderr
        seen: list[tuple[str, str | None]] = []
        while not seen or seen[-1][1] != "Succeeded":
            event = json.loads(lines.next())
            if event["object"]["metadata"]["name"] == "watched-run":
                seen.append((event["type"], event["object"]["status"].get("phase")))
        assert seen[0][0] == "ADDED" and seen[-1] == ("MODIFIED", "Succeeded"), seen
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0
    finally:
        watcher.kill()
        watcher.wait()
