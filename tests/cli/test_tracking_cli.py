"""`runyard runs list|compare`, `metrics`, `artifacts` and `describe run` as users run them, against a real
server holding runs that the real mlflow client tracked (and one runyard ran, logging through the SDK)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.cli.helpers import Server, base_env, runyard_cli

LOSS_END = {"lr-high": 0.3, "lr-low": 0.25, "lr-mid": 0.5}
ACC = {"lr-high": 0.8, "lr-low": 0.85, "lr-mid": 0.7}
LR = {"lr-high": "0.1", "lr-low": "0.001", "lr-mid": "0.01"}
WEIGHTS = os.urandom(3 * 1024 * 1024 + 17)  # over the 1 MiB from which a terminal gets a progress bar


@pytest.fixture(scope="module")
def tracked(srv: Server, tmp_path_factory) -> Server:
    """Experiment "sweep" with three runs (params lr and epochs, a 50-step loss, acc), one with a NaN in
    grad_norm and artifacts (a file, a folder with a subfolder); run "lone" in the Default experiment."""
    from mlflow.entities import Metric, Param

    from mlflow import MlflowClient

    files = tmp_path_factory.mktemp("artifacts")
    (files / "notes.txt").write_text("lr 0.1 overshoots\n")
    (files / "model" / "config").mkdir(parents=True)
    (files / "model" / "weights.bin").write_bytes(WEIGHTS)
    (files / "model" / "config" / "params.json").write_text('{"lr": 0.1}\n')
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_TOKEN", srv.token)
        client = MlflowClient(tracking_uri=srv.url)
        sweep = client.create_experiment("sweep")
        now = int(time.time() * 1000)
        for name in ("lr-mid", "lr-high", "lr-low"):  # created in this order: lr-low is the newest
            run_id = client.create_run(sweep, run_name=name).info.run_id
            drop = 1.0 - LOSS_END[name]
            loss = [Metric("loss", 1.0 - drop * step / 49, now + step, step) for step in range(50)]
            params = [Param("lr", LR[name]), Param("epochs", "3")]
            client.log_batch(run_id, metrics=[*loss, Metric("acc", ACC[name], now, 49)], params=params)
            if name == "lr-low":
                grad = [Metric("grad_norm", v, now, s) for s, v in enumerate([1.0, float("nan"), 0.5])]
                client.log_batch(run_id, metrics=grad)
            if name == "lr-mid":
                client.log_metric(run_id, "val/loss", 0.6, now, 49)
                for i, value in enumerate([120.0, 130.0, 125.0]):  # no step given: all at step 0
                    client.log_metric(run_id, "throughput", value, now + i)
            if name == "lr-high":
                client.set_tag(run_id, "team", "cv")
                client.log_artifact(run_id, str(files / "notes.txt"))
                client.log_artifacts(run_id, str(files / "model"), artifact_path="model")
            client.set_terminated(run_id)
        lone = client.create_run("0", run_name="lone").info.run_id
        client.log_param(lone, "lr", "0.5")
    return srv


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:]]


def names_of(text: str) -> list[str]:
    return [row[0] for row in table_rows(text)]


def column(text: str, header: str) -> list[str]:
    """The cells of one column of a table whose cells hold no spaces."""
    lines = text.splitlines()
    index = lines[0].split().index(header)
    return [line.split()[index] for line in lines[1:]]


def runyard_tty(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    """The CLI with a terminal for stdin, stdout and stderr (so colours and progress bars show): its exit
    code and everything it wrote."""
    main, side = pty.openpty()
    argv = [sys.executable, "-m", "runyard", *args]
    env = {**env, "COLUMNS": "100", "LINES": "30", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=side, stdout=side, stderr=side)
    os.close(side)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


# -- runs list ------------------------------------------------------------------------------------------


def test_runs_list_sorts_by_a_metric_either_way_and_shows_it(tracked):
    up = runyard_cli("runs", "list", "-e", "sweep", "--sort", "metrics.loss", env=tracked.env())
    assert up.returncode == 0, up.stderr
    assert names_of(up.stdout) == ["lr-low", "lr-high", "lr-mid"]
    assert up.stdout.splitlines()[0].split() == ["NAME", "PHASE", "EXPERIMENT", "AGE", "metrics.loss"]
    assert column(up.stdout, "metrics.loss") == ["0.25", "0.3", "0.5"]
    assert column(up.stdout, "PHASE") == ["Succeeded"] * 3
    assert column(up.stdout, "EXPERIMENT") == ["sweep"] * 3
    down = runyard_cli("runs", "list", "-e", "sweep", "--sort", "-metrics.loss", env=tracked.env())
    assert names_of(down.stdout) == ["lr-mid", "lr-high", "lr-low"], down.stderr


def test_the_issues_example_filters_on_a_param_as_a_number_and_sorts_on_a_metric(tracked):
    args = ("runs", "list", "--sort", "metrics.loss", "--filter", "params.lr > 0.005")
    result = runyard_cli(*args, env=tracked.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[4:] == ["params.lr", "metrics.loss"]
    rows = [[row[0], *row[-2:]] for row in table_rows(result.stdout)]
    assert rows[:2] == [["lr-high", "0.1", "0.3"], ["lr-mid", "0.01", "0.5"]]
    assert ["lone", "0.5", "-"] in rows and ["lr-low", "0.001", "0.25"] not in rows


def test_runs_list_sorts_by_name_or_age_as_ps_does(tracked):
    by_name = runyard_cli("runs", "list", "-e", "sweep", "--sort", "name", env=tracked.env())
    assert names_of(by_name.stdout) == ["lr-high", "lr-low", "lr-mid"], by_name.stderr
    youngest = runyard_cli("runs", "list", "-e", "sweep", "--sort", "age", env=tracked.env())
    assert names_of(youngest.stdout) == ["lr-low", "lr-high", "lr-mid"], youngest.stderr
    oldest = runyard_cli("runs", "list", "-e", "sweep", "--sort=-age", env=tracked.env())
    assert names_of(oldest.stdout) == ["lr-mid", "lr-high", "lr-low"], oldest.stderr


def test_runs_list_filters_in_mlflow_syntax_with_the_named_values_as_columns(tracked):
    result = runyard_cli(
        "runs", "list", "--filter", "metrics.acc > 0.75 and params.epochs = '3'", "--sort", "-metrics.acc",
        env=tracked.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[4:] == ["metrics.acc", "params.epochs"]
    assert table_rows(result.stdout) == [
        ["lr-low", "Succeeded", "sweep", row_age(result.stdout, 0), "0.85", "3"],
        ["lr-high", "Succeeded", "sweep", row_age(result.stdout, 1), "0.8", "3"],
    ]


def row_age(text: str, index: int) -> str:
    return column(text, "AGE")[index]


def test_runs_list_without_filter_is_newest_first_with_the_common_metrics_and_limit(tracked):
    result = runyard_cli("runs", "list", env=tracked.env())
    assert result.returncode == 0, result.stderr
    assert names_of(result.stdout) == ["lone", "lr-low", "lr-high", "lr-mid"]
    # the 4 metrics most runs have (acc and loss: 3; then by name of those 1 run has), by name
    metrics = ["metrics.acc", "metrics.grad_norm", "metrics.loss", "metrics.throughput"]
    assert result.stdout.splitlines()[0].split()[4:] == metrics
    assert column(result.stdout, "EXPERIMENT")[0] == "Default"
    assert column(result.stdout, "metrics.acc")[0] == "-"
    limited = runyard_cli("runs", "list", "--limit", "2", env=tracked.env())
    assert names_of(limited.stdout) == ["lone", "lr-low"], limited.stderr


def test_a_key_with_a_slash_sorts_and_charts(tracked):
    listed = runyard_cli("runs", "list", "-e", "sweep", "--sort", "-metrics.val/loss", env=tracked.env())
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[4:] == ["metrics.val/loss"]
    assert names_of(listed.stdout)[0] == "lr-mid"
    assert column(listed.stdout, "metrics.val/loss")[0] == "0.6"
    charted = runyard_cli("metrics", "lr-mid", "val/loss", env=tracked.env())
    assert charted.stdout.splitlines()[-1].startswith("val/loss: 1 point · min 0.6 (step 49)"), charted.stderr


def test_runs_list_wide_shows_every_param_and_metric_and_json_the_documents(tracked):
    wide = runyard_cli("runs", "list", "-e", "sweep", "-o", "wide", env=tracked.env())
    assert wide.returncode == 0, wide.stderr
    header = wide.stdout.splitlines()[0].split()
    assert header[4:] == [
        "ID",
        "params.epochs",
        "params.lr",
        "metrics.acc",
        "metrics.grad_norm",
        "metrics.loss",
        "metrics.throughput",
        "metrics.val/loss",
    ]
    assert column(wide.stdout, "metrics.grad_norm") == ["0.5", "-", "-"]  # the latest: at the last step
    as_json = json.loads(runyard_cli("runs", "list", "-e", "sweep", "-o", "json", env=tracked.env()).stdout)
    by_name = {run["name"]: run for run in as_json["items"]}
    assert set(by_name) == {"lr-high", "lr-low", "lr-mid"}
    assert by_name["lr-high"]["params"] == {"lr": "0.1", "epochs": "3"}
    assert by_name["lr-high"]["metrics"]["acc"] == 0.8 and len(by_name["lr-high"]["runId"]) == 32


def test_runs_list_refuses_a_bad_filter_or_sort_saying_why(tracked):
    bad_filter = runyard_cli("runs", "list", "--filter", "metrics.loss ~ 1", env=tracked.env())
    assert bad_filter.returncode == 1
    assert bad_filter.stderr.startswith("error: ") and "filter" in bad_filter.stderr, bad_filter.stderr
    bad_sort = runyard_cli("runs", "list", "--sort", "loss", env=tracked.env())
    assert bad_sort.returncode == 2
    assert "--sort 'loss': expected metrics.KEY" in bad_sort.stderr
    unknown = runyard_cli("runs", "list", "-e", "nope", env=tracked.env())
    assert unknown.returncode == 1
    assert "error: no experiment named 'nope'" in unknown.stderr
    assert "hint: the experiments of project default: Default, sweep" in unknown.stderr
    nothing = runyard_cli("runs", "list", "--filter", "metrics.loss > 10", env=tracked.env())
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert nothing.stderr == "no runs in project default match\n"


def test_runs_and_ps_live_side_by_side(tracked):
    ps = runyard_cli("ps", env=tracked.env())
    assert ps.returncode == 0, ps.stderr
    high = next(line for line in ps.stdout.splitlines() if line.startswith("lr-high "))
    assert high.split()[1] == "Succeeded" and high.endswith("(tracking only)")


# -- runs compare ---------------------------------------------------------------------------------------


def test_compare_marks_the_rows_that_differ_when_not_a_terminal(tracked):
    result = runyard_cli("runs", "compare", "lr-high", "lr-low", env=tracked.env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["DIFF", "KEY", "lr-high", "lr-low"]
    rows = {row[-3]: row for row in table_rows(result.stdout)}
    assert rows["params.lr"] == ["*", "params.lr", "0.1", "0.001"]
    assert rows["params.epochs"] == ["params.epochs", "3", "3"]
    assert rows["metrics.loss"] == ["*", "metrics.loss", "0.3", "0.25"]
    assert rows["metrics.grad_norm"] == ["*", "metrics.grad_norm", "-", "0.5"]
    assert rows["experiment"] == ["experiment", "sweep", "sweep"]
    assert not any(key.startswith("tags.") for key in rows)
    wide = runyard_cli("runs", "compare", "lr-high", "lr-low", "-o", "wide", env=tracked.env())
    assert ["*", "tags.team", "cv", "-"] in table_rows(wide.stdout), wide.stdout
    only = runyard_cli("runs", "compare", "lr-high", "lr-low", "--only-diff", env=tracked.env())
    keys = [row[1] for row in table_rows(only.stdout)]
    assert keys == ["params.lr", "metrics.acc", "metrics.grad_norm", "metrics.loss"], only.stdout


def test_compare_in_a_terminal_colours_the_rows_that_differ_instead(tracked):
    code, out = runyard_tty("runs", "compare", "lr-high", "lr-mid", env=tracked.env())
    assert code == 0, out
    assert "DIFF" not in out
    lr = next(line for line in out.splitlines() if "params.lr" in line)
    epochs = next(line for line in out.splitlines() if "params.epochs" in line)
    assert "\x1b[33m" in lr and "\x1b[33m" not in epochs


def test_compare_as_json_holds_each_run_and_the_differences(tracked):
    result = runyard_cli("runs", "compare", "lr-high", "lr-mid", "lone", "-o", "json", env=tracked.env())
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [run["name"] for run in doc["runs"]] == ["lr-high", "lr-mid", "lone"]
    assert doc["runs"][0]["params"]["lr"] == "0.1"
    assert doc["runs"][0]["metrics"]["loss"]["step"] == 49
    assert {"experiment", "params.lr", "metrics.loss", "params.epochs"} <= set(doc["differences"])


def test_compare_needs_two_runs_that_exist(tracked):
    one = runyard_cli("runs", "compare", "lr-high", "lr-high", env=tracked.env())
    assert one.returncode == 2 and "two runs or more" in one.stderr
    missing = runyard_cli("runs", "compare", "lr-high", "nope", env=tracked.env())
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: run 'nope' not found in project 'default'\n")
    assert "runyard runs list" in missing.stderr


# -- metrics --------------------------------------------------------------------------------------------


def test_metrics_lists_the_latest_value_of_each(tracked):
    result = runyard_cli("metrics", "lr-high", env=tracked.env())
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert [row[:3] for row in rows] == [["acc", "0.8", "49"], ["loss", "0.3", "49"]]
    as_json = json.loads(runyard_cli("metrics", "lr-high", "-o", "json", env=tracked.env()).stdout)
    assert {m["key"]: m["value"] for m in as_json["metrics"]} == {"acc": 0.8, "loss": pytest.approx(0.3)}
    empty = runyard_cli("metrics", "lone", env=tracked.env())
    assert (empty.returncode, empty.stdout) == (0, "")
    assert "run lone has tracked no metrics" in empty.stderr


def test_metrics_of_a_key_charts_its_history_with_min_max_last(tracked):
    env = {**tracked.env(), "COLUMNS": "80", "LINES": "30"}
    result = runyard_cli("metrics", "lr-high", "loss", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "loss: 50 points · min 0.3 (step 49) · max 1 (step 0) · last 0.3 (step 49)"
    chart = lines[:-1]
    labels = [line.split("┤")[0].strip() for line in chart if "┤" in line]
    assert labels == ["1", "0.65", "0.3"]  # highest, middle, lowest
    assert chart[0].startswith("   1 ┤") and chart[-3].startswith(" 0.3 ┤")
    assert chart[-2] == "     └" + "─" * 74 and chart[-1].split() == ["0", "step", "49"]
    assert all(len(line) <= 80 for line in lines[:-1])
    assert any("\u2801" <= ch <= "\u28ff" for ch in chart[0])  # braille dots: the curve starts top left
    as_json = json.loads(runyard_cli("metrics", "lr-high", "loss", "-o", "json", env=env).stdout)
    assert [p["step"] for p in as_json["history"]] == list(range(50))
    assert as_json["history"][-1]["value"] == pytest.approx(0.3)


def test_metrics_chart_leaves_nan_out_and_says_so(tracked):
    result = runyard_cli("metrics", "lr-low", "grad_norm", env=tracked.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "grad_norm: 3 points · min 0.5 (step 2) · max 1 (step 0) · last 0.5 (step 2) · "
        "1 NaN or infinite not drawn"
    )


def test_metrics_logged_without_steps_chart_in_the_order_they_came(tracked):
    result = runyard_cli("metrics", "lr-mid", "throughput", env=tracked.env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2].split() == ["0", "point", "2"]
    assert lines[-1] == "throughput: 3 points · min 120 (step 0) · max 130 (step 0) · last 125 (step 0)"


def test_metrics_of_a_key_wide_lists_every_point_after_the_chart(tracked):
    result = runyard_cli("metrics", "lr-low", "grad_norm", "-o", "wide", env=tracked.env())
    assert result.returncode == 0, result.stderr
    points = result.stdout.split("\n\n")[-1].splitlines()
    assert points[0].split() == ["STEP", "VALUE", "TIME"]
    assert [line.split()[:2] for line in points[1:]] == [["0", "1"], ["1", "nan"], ["2", "0.5"]]


def test_the_chart_of_one_point_a_flat_line_and_infinities(monkeypatch):
    from runyard.cli.tracking import history_view

    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "12")

    def view(*values: float) -> list[str]:
        points = [{"value": v, "step": i, "timestamp": 0} for i, v in enumerate(values)]
        return history_view("m", points).splitlines()

    one = view(2.5)
    assert [line.split("┤")[0].strip() for line in one if "┤" in line] == ["2.5"]  # one label, mid-height
    assert one[-2].split() == ["0", "point"]
    assert one[-1] == "m: 1 point · min 2.5 (step 0) · max 2.5 (step 0) · last 2.5 (step 0)"
    flat = view(1.0, 1.0, 1.0)
    drawn = [line for line in flat if any("\u2801" <= ch <= "\u28ff" for ch in line)]
    assert len(drawn) == 1 and drawn[0].startswith("1 ┤")  # one straight row, labelled, mid-height
    big = 1.7976931348623157e308  # MLflow's infinity
    mixed = view(1.0, big, float("nan"), -big, 3.0)
    assert mixed[-1] == (
        "m: 5 points · min 1 (step 0) · max 3 (step 4) · last 3 (step 4) · 3 NaN or infinite not drawn"
    )
    assert all(len(line) <= 40 for line in mixed[:-1])
    only_nan = view(float("nan"))
    assert only_nan == ["m: 1 point · last nan (step 0) · 1 NaN or infinite not drawn"]


def test_metrics_of_an_unknown_key_or_run_says_which(tracked):
    key = runyard_cli("metrics", "lr-high", "nope", env=tracked.env())
    assert key.returncode == 1
    assert key.stderr.startswith("error: run 'lr-high' has no metric 'nope'\n")
    assert "runyard metrics lr-high" in key.stderr
    run = runyard_cli("metrics", "nope", env=tracked.env())
    assert run.returncode == 1 and "run 'nope' not found" in run.stderr


# -- artifacts ------------------------------------------------------------------------------------------


def test_artifacts_ls_lists_a_folder_or_everything(tracked):
    top = runyard_cli("artifacts", "ls", "lr-high", env=tracked.env())
    assert top.returncode == 0, top.stderr
    assert table_rows(top.stdout) == [["model/", "-"], ["notes.txt", "18", "B"]]
    every = runyard_cli("artifacts", "ls", "-R", "lr-high", "-o", "wide", env=tracked.env())
    assert table_rows(every.stdout) == [
        ["model/config/params.json", "12"],
        ["model/weights.bin", str(len(WEIGHTS))],
        ["notes.txt", "18"],
    ]
    folder = json.loads(
        runyard_cli("artifacts", "ls", "lr-high", "model", "-o", "json", env=tracked.env()).stdout
    )
    assert folder["root"].endswith("/artifacts")
    assert {(f["path"], f["is_dir"]) for f in folder["files"]} == {
        ("model/config", True),
        ("model/weights.bin", False),
    }
    none = runyard_cli("artifacts", "ls", "lr-low", env=tracked.env())
    assert (none.returncode, none.stderr) == (0, "run lr-low has no artifacts\n")


def test_artifacts_get_downloads_a_folder_a_file_or_everything(tracked, tmp_path):
    folder = runyard_cli(
        "artifacts", "get", "lr-high", "model", "--dest", str(tmp_path / "m"), env=tracked.env()
    )
    assert folder.returncode == 0, folder.stderr
    assert (tmp_path / "m" / "weights.bin").read_bytes() == WEIGHTS
    assert (tmp_path / "m" / "config" / "params.json").read_text() == '{"lr": 0.1}\n'
    assert folder.stderr == f"downloaded 2 files (3.0 MiB) to {tmp_path / 'm'}\n"
    one = runyard_cli("artifacts", "get", "lr-high", "notes.txt", "-o", str(tmp_path), env=tracked.env())
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "notes.txt").read_text() == "lr 0.1 overshoots\n"
    every = runyard_cli("artifacts", "get", "lr-high", env=tracked.env(), cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    got = sorted(
        str(p.relative_to(tmp_path / "lr-high")) for p in (tmp_path / "lr-high").rglob("*") if p.is_file()
    )
    assert got == ["model/config/params.json", "model/weights.bin", "notes.txt"]
    assert not list(tmp_path.rglob("*.part"))


def test_artifacts_get_of_what_is_not_there_says_so(tracked, tmp_path):
    missing = runyard_cli("artifacts", "get", "lr-high", "model/nope.bin", env=tracked.env(), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: run lr-high has no artifact 'model/nope.bin'\n")
    assert not list(tmp_path.iterdir())
    nothing = runyard_cli("artifacts", "get", "lr-low", env=tracked.env(), cwd=tmp_path)
    assert nothing.returncode == 1 and "run lr-low has no artifacts" in nothing.stderr
    (tmp_path / "a-file").write_text("")
    blocked = str(tmp_path / "a-file" / "notes.txt")
    unwritable = runyard_cli("artifacts", "get", "lr-high", "notes.txt", "-o", blocked, env=tracked.env())
    assert unwritable.returncode == 1
    assert unwritable.stderr == f"error: cannot write {blocked}: File exists: {tmp_path / 'a-file'}\n"


def test_artifacts_get_shows_a_progress_bar_on_a_terminal_for_a_large_file(tracked, tmp_path):
    code, out = runyard_tty(
        "artifacts", "get", "lr-high", "model/weights.bin", env=tracked.env(), cwd=tmp_path
    )
    assert code == 0, out
    assert (tmp_path / "weights.bin").read_bytes() == WEIGHTS
    assert "Downloading model/weights.bin" in out
    quiet = runyard_cli(
        "artifacts", "get", "lr-high", "model/weights.bin", "-o", "w.bin", env=tracked.env(), cwd=tmp_path
    )
    assert "Downloading" not in quiet.stderr


# -- describe -------------------------------------------------------------------------------------------


def test_describe_run_shows_params_latest_metrics_and_artifacts(tracked):
    result = runyard_cli("describe", "run", "lr-high", env=tracked.env())
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for title in ("Tracking:", "Params:", "Metrics:", "Artifacts:", "Events:"):
        assert f"\n{title}\n" in text
    params = text.split("\nParams:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split() for line in params] == [["KEY", "VALUE"], ["epochs", "3"], ["lr", "0.1"]]
    metrics = text.split("\nMetrics:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[:3] for line in metrics[1:]] == [["acc", "0.8", "49"], ["loss", "0.3", "49"]]
    artifacts = text.split("\nArtifacts:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in artifacts[1:]] == ["model/", "notes.txt"]
    assert "Experiment:    sweep" in text
    as_json = json.loads(runyard_cli("describe", "run", "lr-high", "-o", "json", env=tracked.env()).stdout)
    assert as_json["tracking"]["params"] == {"epochs": "3", "lr": "0.1"}
    assert {f["path"] for f in as_json["artifacts"]} == {"model", "notes.txt"}
    assert as_json["object"]["metadata"]["name"] == "lr-high"


def test_describe_run_whose_artifacts_are_kept_elsewhere_says_so(tracked, tmp_path):
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_TOKEN", tracked.token)
        client = MlflowClient(tracking_uri=tracked.url)
        elsewhere = client.create_experiment("elsewhere", artifact_location=(tmp_path / "art").as_uri())
        client.create_run(elsewhere, run_name="kept-elsewhere")
    result = runyard_cli("describe", "run", "kept-elsewhere", env=tracked.env())
    assert result.returncode == 0, result.stderr
    assert "\nArtifacts:\n  <kept elsewhere>\n" in result.stdout
    listed = runyard_cli("artifacts", "ls", "kept-elsewhere", env=tracked.env())
    assert listed.returncode == 1 and "outside the server's artifact store" in listed.stderr


# -- a run runyard executes, tracking through the SDK --------------------------------------------------


def test_a_run_that_logs_through_the_sdk_shows_in_metrics_and_compare(tracked, project):
    (project / "train.py").write_text(
        "import runyard\n"
        "runyard.log_params({'lr': '0.2'})\n"
        "for step in range(5):\n"
        "    runyard.log_metric('loss', 1.0 / (step + 1), step=step)\n"
    )
    ran = runyard_cli("run", "--name", "sdk-run", "--cmd", "python train.py", env=tracked.env(), cwd=project)
    assert ran.returncode == 0, ran.stderr
    latest = runyard_cli("metrics", "sdk-run", env=tracked.env())
    assert [row[:3] for row in table_rows(latest.stdout)] == [["loss", "0.2", "4"]], latest.stderr
    compared = runyard_cli("runs", "compare", "sdk-run", "lr-high", "-o", "json", env=tracked.env())
    doc = json.loads(compared.stdout)
    assert doc["runs"][0]["params"] == {"lr": "0.2"} and "params.lr" in doc["differences"]
    client = tracked.client()
    assert client.metrics("sdk-run")["loss"].step == 4
    assert [m.value for m in client.metric_history("sdk-run", "loss")] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    usage = client.usage("sdk-run")
    assert usage["phase"] == "Succeeded" and "memory_bytes" not in usage  # ended: no process to measure


def test_the_client_reads_what_the_cli_shows(tracked, tmp_path):
    client = tracked.client()
    found = client.search_runs("metrics.acc > 0.75", "metrics.loss ASC", experiment="sweep")
    assert [(r.name, r.phase, r.experiment) for r in found] == [
        ("lr-low", "Succeeded", "sweep"),
        ("lr-high", "Succeeded", "sweep"),
    ]
    assert found[1].params == {"lr": "0.1", "epochs": "3"} and found[1].metrics["acc"] == 0.8
    assert [r.name for r in client.search_runs(experiment="sweep", max_results=2)] == ["lr-low", "lr-high"]
    high = client.tracking("lr-high")
    assert (high.experiment, high.status, high.run_id) == ("sweep", "FINISHED", found[1].run_id)
    assert client.metrics("lr-high")["loss"].value == pytest.approx(0.3)
    assert len(client.metric_history("lr-high", "loss", max_results=10)) == 10
    entries = {(a.path, a.is_dir, a.size) for a in client.artifacts("lr-high")}
    assert entries == {("model", True, None), ("notes.txt", False, 18)}
    written = client.download_artifacts("lr-high", "model", tmp_path / "m")
    assert sorted(written) == [tmp_path / "m" / "config" / "params.json", tmp_path / "m" / "weights.bin"]
    assert (tmp_path / "m" / "weights.bin").read_bytes() == WEIGHTS


def test_usage_is_the_running_process_and_metrics_what_it_tracked(tracked, project):
    started = runyard_cli("run", "-d", "--name", "busy", "--cmd", "sleep 30", env=tracked.env(), cwd=project)
    assert started.returncode == 0, started.stderr
    client = tracked.client()
    try:
        deadline = time.monotonic() + 30
        while "memory_bytes" not in (usage := client.usage("busy")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert usage["memory_bytes"] > 0 and usage["cpu_percent"] >= 0 and usage["phase"] == "Running"
        assert client.metrics("busy") == {}
    finally:
        client.stop("busy")


# -- what a server must never make the CLI do -----------------------------------------------------------


class Misbehaving(BaseHTTPRequestHandler):
    """Lists a folder holding a file outside it, and sends a tenth of the file it promises."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if "/artifacts?" in self.path or self.path.endswith("/artifacts"):
            entry = {"path": "../escaped.txt" if "path=model" in self.path else "short.bin", "is_dir": False}
            body = json.dumps({"root": "r", "files": [{**entry, "file_size": 100}]}).encode()
            self._send(len(body), body)
        else:
            self._send(100, b"x" * 10)

    def _send(self, length: int, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def misbehaving() -> Iterator[dict[str, str]]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {**base_env(), "RUNYARD_API_URL": f"http://127.0.0.1:{srv.server_address[1]}", "RUNYARD_TOKEN": "t"}
    srv.shutdown()
    srv.server_close()


def test_an_artifact_named_outside_its_folder_is_refused_and_nothing_written(misbehaving, tmp_path):
    result = runyard_cli("artifacts", "get", "r", "model", env=misbehaving, cwd=tmp_path)
    assert result.returncode == 1
    assert "error: the server named an artifact outside model: '../escaped.txt'" in result.stderr
    assert list(tmp_path.rglob("*")) == []


def test_a_download_cut_short_leaves_no_file(misbehaving, tmp_path):
    result = runyard_cli("artifacts", "get", "r", env=misbehaving, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: the download of ")
    assert "ended after 10 of 100 bytes" in result.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
