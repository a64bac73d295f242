"""The CLI's behaviour that needs no server: help, YAML and usage errors, local validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from tests.cli.helpers import ScriptedServers

from runyard.cli.main import app
from runyard.cli.runs import parse_since
from runyard.upload import LARGE_FILE

# A URL nothing listens on: any test that reached for the server would fail loudly instead of starting one.
NO_SERVER = ["--url", "http://127.0.0.1:1", "--token", "unused"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_lists_the_commands(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "ps", "logs", "stop", "apply", "get", "describe", "delete", "up", "down"):
        assert command in result.stdout


def test_every_command_has_help(runner):
    for command in ("run", "apply", "get", "logs", "server"):
        assert runner.invoke(app, [command, "--help"]).exit_code == 0


def test_version_prints_the_client_version(runner):
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "runyard 0.1.0"


def test_a_yaml_syntax_error_names_file_line_and_column_and_exits_2(runner, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("apiVersion: runyard.dev/v1\nkind: Experiment\nmetadata: {name: x\nspec: {command: y}\n")
    result = runner.invoke(app, [*NO_SERVER, "apply", "-f", str(spec)])
    assert result.exit_code == 2
    assert f"error: {spec}:4:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_yaml_error_on_stdin_is_reported_as_stdin(runner):
    result = runner.invoke(app, [*NO_SERVER, "apply", "-f", "-"], input="a: [1, 2\n")
    assert result.exit_code == 2
    assert "error: <stdin>:2:1:" in result.stderr


def test_an_invalid_document_lists_each_field_and_sends_nothing(runner, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "apiVersion: runyard.dev/v1\nkind: Experiment\nmetadata: {name: ok}\nspec: {command: ''}\n---\n"
        "apiVersion: runyard.dev/v1\nkind: Job\nmetadata: {name: Bad_Name}\nspec: {template: {command: x}}\n"
    )
    result = runner.invoke(app, [*NO_SERVER, "apply", "-f", str(spec)])
    assert result.exit_code == 1
    assert "(document 1): the resource is invalid" in result.stderr
    assert "  spec.command: must not be empty" in result.stderr
    assert "cannot reach" not in result.stderr  # it stopped before any network call


def test_a_missing_file_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(app, [*NO_SERVER, "apply", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "No such file" in result.stderr


def test_an_unknown_kind_word_names_the_kinds_that_exist(runner):
    result = runner.invoke(app, [*NO_SERVER, "get", "wombats"])
    assert result.exit_code == 2
    assert "error: unknown kind 'wombats'" in result.stderr
    assert "experiments" in result.stderr and "runs" in result.stderr


def test_a_malformed_env_pair_is_a_usage_error(runner):
    result = runner.invoke(app, [*NO_SERVER, "run", "--cmd", "true", "--env", "NOVALUE"])
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.stderr


def test_an_unreachable_server_is_one_readable_line(runner):
    result = runner.invoke(app, [*NO_SERVER, "get", "experiments"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the runyard server at http://127.0.0.1:1")
    assert "Traceback" not in result.stderr


def test_flags_in_help_show_no_type_and_every_command_has_help(runner):
    for command in ("run", "ps", "logs", "stop", "apply", "get", "describe", "delete", "projects", "tokens"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "<bool>" not in result.output and "BOOLEAN" not in result.output, result.output
    logs = runner.invoke(app, ["logs", "--help"]).output
    assert "  -f, --follow  " in logs and "--tail INTEGER" in logs


def test_an_empty_yaml_file_is_an_error_naming_it(runner, tmp_path):
    spec = tmp_path / "empty.yaml"
    spec.write_text("# nothing yet\n---\n")
    result = runner.invoke(app, [*NO_SERVER, "apply", "-f", str(spec)])
    assert result.exit_code == 2
    assert f"error: no documents in {spec}" in result.stderr
    assert "cannot reach" not in result.stderr


def test_an_invalid_project_name_is_refused_before_any_request(runner):
    result = runner.invoke(app, [*NO_SERVER, "-p", "Bad_Proj", "ps"])
    assert result.exit_code == 2
    assert "error: project 'Bad_Proj' is not a valid name: use lowercase letters" in result.stderr
    assert "cannot reach" not in result.stderr


def test_since_takes_a_duration_ago_or_a_time(runner):
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == "2026-01-31T11:50:00+00:00"
    assert parse_since("2d", now) == "2026-01-29T12:00:00+00:00"
    assert parse_since("2026-01-31T09:30:00+02:00") == "2026-01-31T07:30:00+00:00"
    result = runner.invoke(app, [*NO_SERVER, "logs", "x", "--since", "yesterday"])
    assert result.exit_code == 2 and "--since 'yesterday': expected a duration like 30s" in result.stderr


def test_an_upload_notes_each_symlink_left_out_and_warns_of_large_files_with_the_total(runner, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('x')\n")
    with open(project / "weights.bin", "wb") as f:
        f.truncate(LARGE_FILE + 1)  # sparse: big to read, nothing on disk
    (project / "outside").symlink_to(tmp_path)
    (project / "dangling").symlink_to(tmp_path / "gone")
    result = runner.invoke(app, [*NO_SERVER, "run", "--cmd", "true", "--path", str(project)])
    assert "note: symlink dangling left out of the snapshot" in result.stderr
    assert "note: symlink outside left out of the snapshot" in result.stderr
    large = "warning: the snapshot holds 50 MiB in 2 files, 1 of them over 50 MiB: weights.bin (50 MiB);"
    assert large in result.stderr
    assert "cannot reach" in result.stderr  # what is said comes before the upload


def test_a_watch_the_server_closes_is_an_error_not_a_silent_exit(runner):
    run = {"kind": "Run", "metadata": {"name": "r"}, "status": {"phase": "Running"}}

    def answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict]:
        return 200, {"type": "ADDED", "revision": 1, "object": run}  # one event, then the stream ends

    with ScriptedServers() as start:
        result = runner.invoke(app, ["--url", start(answer), "--token", "t", "get", "runs", "-w"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].split() == ["ADDED", "r", "Running"]
    assert "error: the server closed the watch; run the command again" in result.stderr


def test_following_logs_of_an_unreachable_server_is_one_readable_line(runner):
    result = runner.invoke(app, [*NO_SERVER, "logs", "-f", "some-run"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the runyard server at http://127.0.0.1:1")
