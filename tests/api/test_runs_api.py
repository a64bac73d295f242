"""Runs end to end over HTTP: logs, exit codes, snapshots, stop, timeouts, retries, events, limits."""

from __future__ import annotations

import hashlib
import time

from tests.support import experiment, read_logs, wait_phase


def test_an_experiment_runs_and_its_logs_stream_with_timestamps(server):
    api = server.api()
    api.put("/experiments/hello", json=experiment("hello", "echo out; echo err >&2"))
    lines, end = read_logs(api, "hello")
    assert [(entry["stream"], entry["text"]) for entry in lines] == [("stdout", "out"), ("stderr", "err")]
    assert all(entry["time"].startswith("20") for entry in lines)
    assert (end["phase"], end["exitCode"]) == ("Succeeded", 0)
    exp = api.get("/experiments/hello").json()
    assert exp["status"]["runs"] == ["hello"]
    assert wait_phase(api, "hello", {"Succeeded"})["status"]["exitCode"] == 0


def test_logs_are_kept_after_the_run_ends(server):
    api = server.api()
    api.put("/experiments/kept", json=experiment("kept", "seq 3"))
    wait_phase(api, "kept", {"Succeeded"})
    lines, end = read_logs(api, "kept", follow=False)
    assert [entry["text"] for entry in lines] == ["1", "2", "3"]
    assert end["phase"] == "Succeeded"


def test_a_failing_command_records_its_exit_code_and_reason(server):
    api = server.api()
    api.put("/experiments/boom", json=experiment("boom", "exit 7"))
    run = wait_phase(api, "boom", {"Failed"})
    assert run["status"]["exitCode"] == 7
    assert run["status"]["reason"] == "Error"
    assert "exited with code 7" in run["status"]["message"]


def test_the_run_sees_its_identity_and_the_api(server):
    api = server.api()
    cmd = 'echo "$RUNYARD_RUN_ID $RUNYARD_PROJECT $RUNYARD_API_URL"; test -n "$RUNYARD_TOKEN"'
    api.put("/experiments/who", json=experiment("who", cmd))
    lines, end = read_logs(api, "who")
    assert lines[0]["text"] == f"who default {server.url}"
    assert end["exitCode"] == 0


def test_a_run_works_in_its_own_copy_of_the_snapshot(server):
    api = server.api()
    content = b"print('from the snapshot')\n"
    digest = hashlib.sha256(content).hexdigest()
    manifest = {"files": {"pkg/train.py": {"sha256": digest, "size": len(content), "mode": 0o644}}}
    first = api.post("/snapshots", json=manifest).json()
    assert first["missing"] == [digest]
    up = api.put(f"/blobs/{digest}", content=content)
    assert up.status_code == 201
    again = api.post("/snapshots", json=manifest).json()
    assert again == {"id": first["id"], "missing": []}
    api.put(
        "/experiments/snap",
        json=experiment("snap", "python3 pkg/train.py; touch made-here", snapshot=first["id"]),
    )
    lines, end = read_logs(api, "snap")
    assert [entry["text"] for entry in lines] == ["from the snapshot"]
    assert end["phase"] == "Succeeded"


def test_a_blob_whose_bytes_do_not_match_its_name_is_refused(server):
    bad = server.api().put(f"/blobs/{'0' * 64}", content=b"hello")
    assert bad.status_code == 422


def test_stop_sends_sigterm_and_the_run_is_cancelled(server):
    api = server.api()
    api.put("/experiments/long", json=experiment("long", "echo started; sleep 60"))
    wait_phase(api, "long", {"Running"})
    assert api.post("/runs/long/stop").status_code == 200
    run = wait_phase(api, "long", {"Cancelled"}, timeout=10)
    assert run["status"]["reason"] == "Stopped"
    assert run["status"]["exitCode"] == -15
    reasons = [e["reason"] for e in api.get("/runs/long/events").json()["items"]]
    assert "StopRequested" in reasons and "Stopped" in reasons


def test_stop_escalates_to_sigkill_after_the_grace_period(server):
    api = server.api()
    spec = experiment(
        "stubborn", "trap '' TERM; echo ready; while true; do sleep 0.1; done", stopGracePeriodSeconds=0.5
    )
    api.put("/experiments/stubborn", json=spec)
    read_until(api, "stubborn", "ready")
    t0 = time.monotonic()
    api.post("/runs/stubborn/stop")
    run = wait_phase(api, "stubborn", {"Cancelled"}, timeout=10)
    assert run["status"]["exitCode"] == -9
    assert time.monotonic() - t0 < 5


def test_a_run_over_its_timeout_is_stopped_and_fails(server):
    api = server.api()
    api.put("/experiments/slow", json=experiment("slow", "sleep 30", timeoutSeconds=0.5))
    run = wait_phase(api, "slow", {"Failed"}, timeout=10)
    assert run["status"]["reason"] == "DeadlineExceeded"


def test_a_failed_attempt_is_retried_per_policy(server):
    api = server.api()
    # Fails the first attempt, succeeds the second (a sandboxed run can write only its own work dir, fresh
    # for each attempt: the attempt's number is how it knows).
    cmd = 'if [ "$RUNYARD_ATTEMPT" -gt 1 ]; then echo second; else echo first; exit 1; fi'
    api.put(
        "/experiments/flaky",
        json=experiment("flaky", cmd, retryPolicy={"maxRetries": 2, "backoffSeconds": 0.1}),
    )
    lines, end = read_logs(api, "flaky")
    assert [entry["text"] for entry in lines] == ["first", "second"]
    assert end["phase"] == "Succeeded"
    run = api.get("/runs/flaky").json()
    assert [a["exitCode"] for a in run["status"]["attempts"]] == [1, 0]
    assert "Retrying" in [e["reason"] for e in api.get("/runs/flaky/events").json()["items"]]


def test_describe_events_show_each_transition_with_reasons(server):
    api = server.api()
    api.put("/experiments/ev", json=experiment("ev", "true"))
    wait_phase(api, "ev", {"Succeeded"})
    events = api.get("/runs/ev/events").json()["items"]
    assert [e["reason"] for e in events][:3] == ["Created", "Admitted", "Started"]
    assert events[-1]["reason"] == "Completed"
    conditions = {c["type"]: c["status"] for c in api.get("/runs/ev").json()["status"]["conditions"]}
    assert conditions == {"Admitted": "True", "Started": "True", "Completed": "True", "Sandboxed": "True"}


def test_a_memory_limit_is_applied_and_reported(server):
    api = server.api()
    api.put(
        "/experiments/capped", json=experiment("capped", "true", resources={"memory": "256Mi", "cpu": "500m"})
    )
    run = wait_phase(api, "capped", {"Succeeded"})
    limits = run["status"]["limits"]
    assert limits["mechanism"] in {"cgroup-v1", "cgroup-v2", "rlimit"}
    assert limits["memory"] == 256 * 2**20
    assert "memory" in limits["enforced"]


def test_deleting_an_experiment_stops_and_removes_its_run(server):
    api = server.api()
    api.put("/experiments/gone", json=experiment("gone", "sleep 60"))
    wait_phase(api, "gone", {"Running"})
    api.delete("/experiments/gone")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and api.get("/experiments/gone").status_code != 404:
        time.sleep(0.1)
    assert api.get("/experiments/gone").status_code == 404
    assert api.get("/runs/gone").status_code == 404


def read_until(api, run: str, text: str) -> None:
    with api.stream("GET", f"/runs/{run}/logs", params={"follow": "true"}, timeout=30) as resp:
        for raw in resp.iter_lines():
            if text in raw:
                return
    raise AssertionError(f"{text!r} never appeared in {run}'s logs")


def test_deleting_an_experiments_run_does_not_run_the_experiment_again(server, tmp_path):
    api = server.api()
    api.put("/experiments/once", json=experiment("once", "echo ran"))
    wait_phase(api, "once", {"Succeeded"})
    assert api.delete("/runs/once").status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and api.get("/runs/once").status_code != 404:
        time.sleep(0.05)
    time.sleep(1.5)  # a full resync has passed
    assert api.get("/runs/once").status_code == 404
    assert api.get("/runs").json()["items"] == []  # no run of it again (a run writes only its work dir)
    exp = api.get("/experiments/once").json()
    assert exp["status"]["reason"] == "RunDeleted"
    assert exp["status"]["phase"] == "Succeeded"


def test_a_running_runs_memory_is_reported_through_the_runtime(server):
    api = server.api()
    cmd = (
        "python3 -c \"import time; data = bytearray(64 * 2**20); print('ready', flush=True); time.sleep(30)\""
    )
    api.put("/experiments/hungry", json=experiment("hungry", cmd))
    read_until(api, "hungry", "ready")
    usage = api.get("/runs/hungry/usage").json()
    assert usage["phase"] == "Running" and usage["attempt"] == 1
    assert usage["memory_bytes"] > 64 * 2**20
    api.post("/runs/hungry/stop")
    wait_phase(api, "hungry", {"Cancelled"})
    assert "memory_bytes" not in api.get("/runs/hungry/usage").json()


def test_a_snapshot_path_outside_the_project_is_refused(server):
    manifest = {"files": {"../escape.py": {"sha256": "0" * 64, "size": 1, "mode": 0o644}}}
    r = server.api().post("/snapshots", json=manifest)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "files.../escape.py"


def test_a_gpu_request_the_runtime_cannot_meet_fails_with_a_clear_reason(server):
    api = server.api()
    api.put("/experiments/needs-gpu", json=experiment("needs-gpu", "nvidia-smi", resources={"gpu": 1}))
    run = wait_phase(api, "needs-gpu", {"Failed"})
    assert run["status"]["reason"] == "Unschedulable"
    assert "GPU" in run["status"]["message"]
    assert run["status"]["attempts"] == []  # nothing was launched


def test_a_run_does_not_inherit_the_servers_own_secrets(tmp_path, monkeypatch):
    """The server's RUNYARD_* settings (an admin token, a store URL with a password) stay out of runs."""
    from tests.support import ServerProcess

    monkeypatch.setenv("RUNYARD_TOKEN", "ryd_the_admins_secret")
    monkeypatch.setenv("RUNYARD_SERVER_PUBLIC_URL", "http://127.0.0.1:1")
    srv = ServerProcess(tmp_path / "home").start()
    try:
        api = srv.api()
        api.put("/experiments/env", json=experiment("env", "env | sort", env={"MINE": "kept"}))
        lines, _ = read_logs(api, "env")
        env = dict(entry["text"].split("=", 1) for entry in lines if "=" in entry["text"])
        assert env["MINE"] == "kept"
        assert env["RUNYARD_TOKEN"] != "ryd_the_admins_secret"
        assert "RUNYARD_SERVER_PUBLIC_URL" not in env
        assert "PATH" in env
    finally:
        srv.stop()
