"""The CLI's behaviour that needs no server: help, YAML and usage errors, local validation."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from runyard.cli.main import app

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
