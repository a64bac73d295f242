"""Every setting of the server and controller: read from the environment, overridden by a flag, documented.

Where a setting is observable from outside (the address listened on, the store opened, the data directory,
the URL runs get), the real `runyard server` process shows it; the rest are checked on the settings classes
and by the server refusing a bad value, named as the user set it.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from tests.support import ServerProcess, experiment, fresh_postgres_database, read_logs, wait_phase

from runyard.settings import ControllerSettings, NotifySettings, RuntimeSettings, ServerSettings, env_name

README = Path(__file__).resolve().parents[1] / "README.md"
SAMPLES = {  # field: (value as the environment gives it, value parsed)
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9123", 9123),
    "home": ("/srv/runyard", Path("/srv/runyard")),
    "store_url": ("postgresql://ry@db/ry", "postgresql://ry@db/ry"),
    "public_url": ("http://runyard.internal:8765", "http://runyard.internal:8765"),
    "max_blob_bytes": ("1048576", 1 << 20),
    "artifact_root": ("s3://bucket/runyard", "s3://bucket/runyard"),
    "max_artifact_bytes": ("2097152", 2 << 20),
    "kubernetes": ("true", True),
    "kubeconfig": ("/etc/runyard/kubeconfig", "/etc/runyard/kubeconfig"),
    "kube_context": ("prod", "prod"),
    "tick_seconds": ("0.25", 0.25),
    "max_running_runs": ("7", 7),
    "launch_timeout_seconds": ("40", 40.0),
    "sandbox": ("required", "required"),
    "node_cpu": ("1.5", 1.5),
    "node_memory": ("8Gi", "8Gi"),
    "node_gpus": ("1", 1),
    "simulated_gpus": ("2", "2"),
    "default_pids": ("512", 512),
    "pythons": ("/opt/py/bin/python3.12", "/opt/py/bin/python3.12"),
    "env_retention_seconds": ("3600", 3600.0),
    "smtp_host": ("mail.example.org", "mail.example.org"),
    "smtp_port": ("587", 587),
    "smtp_security": ("starttls", "starttls"),
    "smtp_username": ("runyard", "runyard"),
    "smtp_password": ("s3cret", "s3cret"),
    "smtp_from": ("jobs@example.org", "jobs@example.org"),
    "timeout_seconds": ("2.5", 2.5),
    "max_attempts": ("3", 3),
    "backoff_seconds": ("0.5", 0.5),
}
ENV_ONLY = (ControllerSettings, RuntimeSettings, NotifySettings)
FIELDS = [(cls, name) for cls in (ServerSettings, *ENV_ONLY) for name in cls.model_fields]


@functools.cache
def server_help() -> str:
    argv = [sys.executable, "-m", "runyard", "server", "--help"]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def server_flags() -> frozenset[str]:
    """The long options `runyard server --help` lists, but --help itself."""
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z-]+", server_help())) - {"--help"}


def flag(name: str) -> str | None:
    """The `runyard server` flag of a ServerSettings field, if it has one."""
    option = f"--{name.replace('_', '-')}"
    return option if option in server_flags() else None


@pytest.fixture
def clean_env(monkeypatch):
    """No RUNYARD_* setting of this machine leaks into a test; the tests' own (RUNYARD_TEST_*) stay."""
    for name in list(os.environ):
        if name.upper().startswith("RUNYARD_") and not name.upper().startswith("RUNYARD_TEST_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_samples_cover_every_field():
    assert sorted(SAMPLES) == sorted(name for _, name in FIELDS)


@pytest.mark.parametrize(("cls", "name"), FIELDS)
def test_each_setting_reads_its_environment_variable(clean_env, cls, name):
    raw, parsed = SAMPLES[name]
    clean_env.setenv(env_name(cls, name), raw)
    assert getattr(cls(), name) == parsed


def test_every_flag_of_runyard_server_is_a_setting():
    assert {flag(name) for name in ServerSettings.model_fields} - {None} == server_flags()


def test_runyard_server_help_names_every_setting_it_has_no_flag_for():
    shown = " ".join(server_help().split())  # as wrapped for the terminal
    for cls, name in FIELDS:
        if cls in ENV_ONLY or flag(name) is None:
            assert env_name(cls, name) in shown


@pytest.mark.parametrize("name", list(ServerSettings.model_fields))
def test_a_value_given_as_an_argument_wins_over_the_environment(clean_env, name):
    """What `runyard server` does with the flags it was given (the process tests below show it end to end)."""
    raw, _ = SAMPLES[name]
    clean_env.setenv(env_name(ServerSettings, name), raw)
    flags = {
        "port": 1,
        "home": Path("/flag"),
        "max_blob_bytes": 5,
        "max_artifact_bytes": 5,
        "kubernetes": False,
    }
    given = flags.get(name, "flag")
    assert getattr(ServerSettings(**{name: given}), name) == given


def test_defaults_without_environment(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path))
    server, controller = ServerSettings(), ControllerSettings()
    assert (server.host, server.port, server.store_url, server.public_url) == ("127.0.0.1", 8765, None, None)
    assert server.home == tmp_path / ".runyard"
    assert server.resolved_store_url() == f"sqlite:///{tmp_path / '.runyard' / 'runyard.db'}"
    assert controller.model_dump() == {
        "tick_seconds": 1.0,
        "max_running_runs": 256,
        "launch_timeout_seconds": 15.0,
    }
    assert RuntimeSettings().model_dump() == {
        "sandbox": "auto",
        "node_cpu": None,
        "node_memory": None,
        "node_gpus": None,
        "simulated_gpus": None,
        "default_pids": 4096,
        "pythons": None,
        "env_retention_seconds": 7 * 24 * 3600.0,
    }
    assert NotifySettings().model_dump() == {
        "smtp_host": None,
        "smtp_port": 25,
        "smtp_security": "none",
        "smtp_username": None,
        "smtp_password": None,
        "smtp_from": "runyard@localhost",
        "timeout_seconds": 10.0,
        "max_attempts": 8,
        "backoff_seconds": 2.0,
    }


def test_every_field_is_documented_and_listed_in_the_readme():
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for cls, name in FIELDS:
        assert cls.model_fields[name].description, f"{cls.__name__}.{name} has no docstring"
        assert f"`{env_name(cls, name)}`" in section, f"README's configuration table lacks {name}"
    for name in ServerSettings.model_fields:
        option = flag(name)
        assert option is None or f"`{option}`" in section, f"README's configuration table lacks {option}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_url_seen_by_a_run(srv: ServerProcess) -> str:
    api = srv.api()
    assert api.put("/experiments/url", json=experiment("url", 'echo "$RUNYARD_API_URL"')).status_code == 201
    wait_phase(api, "url", {"Succeeded"})
    lines, _ = read_logs(api, "url", follow=False)
    return lines[0]["text"]


def test_the_server_listens_keeps_data_and_tells_runs_where_the_environment_says(clean_env, tmp_path):
    home, port = tmp_path / "env-home", free_port()
    env = {
        **os.environ,
        "RUNYARD_HOME": str(home),
        "RUNYARD_SERVER_HOST": "127.0.0.2",
        "RUNYARD_SERVER_PORT": str(port),
        "RUNYARD_SERVER_PUBLIC_URL": "http://runyard.internal:9000",
    }
    srv = ServerProcess(home, args=["server"], env=env).start()
    try:
        assert srv.url == f"http://127.0.0.2:{port}"
        assert (home / "runyard.db").exists()
        assert api_url_seen_by_a_run(srv) == "http://runyard.internal:9000"
    finally:
        srv.stop()


def test_flags_win_over_the_environment(clean_env, tmp_path):
    env_home, home, port = tmp_path / "env-home", tmp_path / "flag-home", free_port()
    env = {
        **os.environ,
        "RUNYARD_HOME": str(env_home),
        "RUNYARD_SERVER_HOST": "127.0.0.2",
        "RUNYARD_SERVER_PORT": "1",
        "RUNYARD_SERVER_STORE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
        "RUNYARD_SERVER_PUBLIC_URL": "http://from-env:1",
    }
    store = tmp_path / "flag.db"
    args = ["--home", str(home), "server", "--host", "127.0.0.3", "--port", str(port)]
    args += ["--store-url", f"sqlite:///{store}", "--public-url", "http://from-flag:2"]
    srv = ServerProcess(home, args=args, env=env).start()
    try:
        assert srv.url == f"http://127.0.0.3:{port}"
        assert store.exists() and not env_home.exists()
        assert api_url_seen_by_a_run(srv) == "http://from-flag:2"
    finally:
        srv.stop()


@pytest.mark.postgres
def test_a_store_url_from_the_environment_is_really_used(clean_env, tmp_path):
    url = fresh_postgres_database()
    env = {**os.environ, "RUNYARD_SERVER_STORE_URL": url}
    srv = ServerProcess(tmp_path / "home", env=env).start()
    try:
        assert srv.api().put("/experiments/pg", json=experiment("pg", "true")).status_code == 201
        with psycopg.connect(url) as conn:
            names = [row[0] for row in conn.execute("SELECT name FROM resources WHERE kind = 'Experiment'")]
        assert names == ["pg"]
        assert not (tmp_path / "home" / "runyard.db").exists()
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("RUNYARD_SERVER_PORT", "70000"),
        ("RUNYARD_CONTROLLER_TICK_SECONDS", "0"),
        ("RUNYARD_CONTROLLER_MAX_RUNNING_RUNS", "0"),
        ("RUNYARD_CONTROLLER_LAUNCH_TIMEOUT_SECONDS", "-1"),
        ("RUNYARD_NOTIFY_MAX_ATTEMPTS", "0"),
        ("RUNYARD_NOTIFY_SMTP_SECURITY", "tls"),
        ("--port", "70000"),
    ],
)
def test_a_bad_value_stops_the_server_before_it_starts_naming_the_setting(
    clean_env, tmp_path, setting, value
):
    env = {**os.environ, "RUNYARD_HOME": str(tmp_path), "RUNYARD_SERVER_PORT": "0"}
    args = ["server"]
    if setting.startswith("--"):
        args += [setting, value]
    else:
        env[setting] = value
    proc = subprocess.run(
        [sys.executable, "-m", "runyard", *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1, proc.stderr
    assert re.search(rf"^  {re.escape(setting)}: .*\(got '?{re.escape(value)}'?\)$", proc.stderr, re.M)
    assert not (tmp_path / "server.json").exists()


def test_a_data_directory_that_is_a_file_is_one_clear_line_not_a_traceback(clean_env, tmp_path):
    home = tmp_path / "not-a-dir"
    home.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "runyard", "server", "--port", "0"],
        env={**os.environ, "RUNYARD_SERVER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot use {home} as the data directory" in proc.stderr


def test_the_artifact_root_and_limit_from_the_environment_are_really_used(clean_env, tmp_path):
    root = tmp_path / "artifact-root"
    env = {**os.environ, "RUNYARD_SERVER_ARTIFACT_ROOT": f"file://{root}"}
    env["RUNYARD_SERVER_MAX_ARTIFACT_BYTES"] = "1000"
    srv = ServerProcess(tmp_path / "home", env=env).start()
    try:
        url = srv.url + "/api/2.0/mlflow-artifacts/artifacts/default/x/a.bin"
        headers = {"Authorization": f"Bearer {srv.token}"}
        assert httpx.put(url, content=b"a" * 1000, headers=headers).status_code == 200
        assert (root / "default" / "x" / "a.bin").stat().st_size == 1000
        assert httpx.put(url, content=b"a" * 1001, headers=headers).status_code == 413
        assert not (tmp_path / "home" / "artifacts").exists()
    finally:
        srv.stop()


@pytest.mark.parametrize("root", ["nope://bucket/runyard", "FILE-IS-HERE/below"])
def test_an_artifact_root_that_cannot_be_used_is_one_clear_line_not_a_traceback(clean_env, tmp_path, root):
    (tmp_path / "FILE-IS-HERE").write_text("")
    root = root.replace("FILE-IS-HERE", str(tmp_path / "FILE-IS-HERE"))
    proc = subprocess.run(
        [sys.executable, "-m", "runyard", "server", "--port", "0", "--artifact-root", root],
        env={**os.environ, "RUNYARD_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot use {root} as the artifact root" in proc.stderr
