"""`runyard env list|build|show|log|rm`, and what `runyard run` says of a run's environment and sandbox, as
users run them (a separate process) against a real server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.helpers import Server, base_env, runyard_cli
from tests.cli.test_tracking_cli import runyard_tty

TINY = "six==1.16.0\n"  # a pure-Python wheel; a comment line makes it another environment, built afresh
ENV_ID = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[Server]:
    """The sandbox is off: runs in environments inside the sandbox are tests/environments' other tests;
    here a run also shows the warning of an unsandboxed one."""
    env = {**base_env(), "RUNYARD_RUNTIME_SANDBOX": "off"}
    server = Server(tmp_path_factory.mktemp("env-cli") / "home", env=env).start()
    yield server
    server.stop()


def project(tmp_path: Path, requirements: str | None) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    (root / "train.py").write_text("import six, sys\nprint('six', six.__version__, 'in', sys.prefix)\n")
    return root


def test_env_build_shows_progress_and_ends_ready_then_list_show_and_rm(srv, tmp_path):
    root = project(tmp_path, TINY + "# cli build\n")
    built = runyard_cli("env", "build", str(root), "--name", "web", env=srv.env())
    assert built.returncode == 0, built.stderr
    env_id = built.stdout.strip()
    assert ENV_ID.fullmatch(env_id), built.stdout
    assert f"building environment {env_id}" in built.stderr
    assert re.search(
        rf"environment {env_id} ready \(python \d+\.\d+\.\d+, 1 package, \d+\.\d s\)", built.stderr
    ), built.stderr
    log_lines = built.stderr.split(f"building environment {env_id}", 1)[1].splitlines()[1:-1]
    assert log_lines, "no build log lines were shown"

    again = runyard_cli("env", "build", str(root), env=srv.env())
    assert (again.returncode, again.stdout.strip()) == (0, env_id)
    assert "built before" in again.stderr and "building" not in again.stderr

    listed = runyard_cli("env", "list", env=srv.env())
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME(S)", "ID", "STATE", "PYTHON", "PACKAGES", "SIZE", "LAST", "USED"]
    row = next(r for r in rows if r.startswith("web "))
    assert row.split()[1:3] == [env_id[:19], "Ready"]
    as_json = json.loads(runyard_cli("env", "list", "-o", "json", env=srv.env()).stdout)
    assert env_id in [item["id"] for item in as_json["items"]]

    shown = runyard_cli("env", "show", "web", env=srv.env())
    assert shown.returncode == 0, shown.stderr
    assert env_id in shown.stdout and "Packages (1):" in shown.stdout
    assert re.search(r"six\s+1\.16\.0", shown.stdout)
    lock = runyard_cli("env", "show", env_id[:19], "--lock", env=srv.env())
    assert "six==1.16.0" in lock.stdout and "--hash=sha256:" in lock.stdout
    record = json.loads(runyard_cli("env", "show", "web", "-o", "json", env=srv.env()).stdout)
    assert record["lock"] == lock.stdout
    log = runyard_cli("env", "log", "web", env=srv.env())
    assert log.returncode == 0 and log.stdout.strip()

    dropped = runyard_cli("env", "rm", "web", env=srv.env())
    assert dropped.returncode == 0 and "name web removed" in dropped.stderr
    missing = runyard_cli("env", "show", "web", env=srv.env())
    assert missing.returncode == 1 and "`runyard env list`" in missing.stderr
    removed = runyard_cli("env", "rm", env_id[:19], env=srv.env())
    assert removed.returncode == 0 and f"environment {env_id} removed" in removed.stderr


def test_env_build_on_a_terminal_shows_a_status_line_with_the_logs_latest_line(srv, tmp_path):
    code, out = runyard_tty("env", "build", str(project(tmp_path, TINY + "# tty\n")), env=srv.env())
    assert code == 0, out
    assert "building environment sha256:" in out and "installing" in out
    assert re.search(r"environment sha256:[0-9a-f]{64} .*ready.* \(python", out), out


def test_a_failed_build_exits_1_with_the_resolvers_message(srv, tmp_path):
    root = project(tmp_path, "six==99.0\n")
    failed = runyard_cli("env", "build", str(root), env=srv.env())
    assert failed.returncode == 1, failed.stderr
    assert "error: environment sha256:" in failed.stderr and "failed to build" in failed.stderr
    assert "six" in failed.stderr.split("failed to build", 1)[1]
    assert "Traceback" not in failed.stderr and failed.stdout == ""


def test_env_build_needs_dependency_files(srv, tmp_path):
    done = runyard_cli("env", "build", str(project(tmp_path, None)), env=srv.env())
    assert done.returncode == 2
    assert "no requirements.txt or pyproject.toml in" in done.stderr


def test_a_run_of_a_project_with_requirements_shows_its_environment_being_built(srv, tmp_path):
    root = project(tmp_path, TINY + "# cli run\n")
    done = runyard_cli("run", "-n", "with-env", "-c", "python train.py", env=srv.env(), cwd=root)
    assert done.returncode == 0, done.stderr
    building = re.search(r"building environment (sha256:[0-9a-f]{64}) for this run", done.stderr)
    assert building, done.stderr
    assert f"environment {building.group(1)} ready" in done.stderr
    assert re.match(r"six 1\.16\.0 in /\S+", done.stdout), done.stdout

    described = runyard_cli("describe", "run", "with-env", env=srv.env())
    assert re.search(rf"Environment:\s+{building.group(1)} \(default; python \d", described.stdout)

    second = runyard_cli("run", "-c", "python train.py", env=srv.env(), cwd=root)
    assert second.returncode == 0 and "building environment" not in second.stderr  # built once


def test_an_unsandboxed_run_is_warned_about_once_and_described(srv, tmp_path):
    done = runyard_cli("run", "-n", "loose", "-c", "echo hi", env=srv.env(), cwd=project(tmp_path, None))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"
    warning = "warning: this run is not sandboxed: sandbox is off (RUNYARD_RUNTIME_SANDBOX=off)"
    assert done.stderr.count(warning) == 1, done.stderr
    described = runyard_cli("describe", "run", "loose", env=srv.env())
    assert re.search(r"Sandbox:\s+none: sandbox is off", described.stdout), described.stdout
    assert re.search(r"Limits:\s+pids 4096", described.stdout), described.stdout


def test_run_environment_option_names_one_and_an_unknown_one_fails_saying_how_to_make_it(srv, tmp_path):
    root = project(tmp_path, TINY + "# never built\n")
    missing = runyard_cli("run", "--environment", "nope", "-c", "true", env=srv.env(), cwd=root)
    assert missing.returncode == 1, missing.stderr
    assert "error: environment 'nope' not found" in missing.stderr, missing.stderr
    assert "runyard env build" in missing.stderr and "Traceback" not in missing.stderr
    system = runyard_cli("run", "--environment", "system", "-c", "echo host", env=srv.env(), cwd=root)
    assert (system.returncode, system.stdout) == (0, "host\n"), system.stderr
    assert "building environment" not in system.stderr


def test_a_run_whose_environment_fails_to_build_exits_1_saying_why_once(srv, tmp_path):
    root = project(tmp_path, "six==99.0\n# a run's failed build\n")
    done = runyard_cli("run", "-c", "python train.py", env=srv.env(), cwd=root)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("failed to build") == 1, done.stderr  # shown with the build, or at the end
    assert "six==99" in done.stderr.split("failed to build", 1)[1]
    assert "Traceback" not in done.stderr and done.stdout == ""
