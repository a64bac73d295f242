"""What `import runyard` costs a run: the standard library only, on old Pythons too, and a log call that
only queues."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.sdk.conftest import PACKAGE_ROOT

import runyard

PROBE = """
import sys
before = set(sys.modules)
import runyard
calls = [runyard.log_metric, runyard.log_metrics, runyard.log_param, runyard.log_params, runyard.set_tag,
         runyard.set_tags, runyard.log_artifact, runyard.log_artifacts, runyard.start_run]
loaded = set(sys.modules) - before
print(sorted(m for m in loaded if m.split('.')[0] not in sys.stdlib_module_names))
"""


def only_runyard(tmp_path: Path) -> Path:
    """A directory holding nothing but the runyard package, as runs get it."""
    root = tmp_path / "sdk"
    root.mkdir()
    (root / "runyard").symlink_to(Path(runyard.__file__).parent)
    return root


def test_the_tracking_functions_load_nothing_beyond_the_standard_library(tmp_path):
    # -I: no site-packages, no PYTHONPATH, no user site: only the standard library and the package
    code = f"import sys; sys.path.insert(0, {str(only_runyard(tmp_path))!r})\n{PROBE}"
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['runyard', 'runyard.tracking']"


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10"])
def test_the_tracking_functions_import_on_older_pythons(tmp_path, version):
    """A project environment may pin an older Python than the server's: any the server can build one on
    (on PATH, pyenv's) is tried."""
    from runyard.services.pythons import Pythons

    found = [i for i in Pythons().all() if i.version.startswith(version + ".")]
    if not found:
        pytest.skip(f"no Python {version} installed here")
    exe = found[0].path
    code = f"import sys; sys.path.insert(0, {str(only_runyard(tmp_path))!r})\nimport runyard\n"
    code += "runyard.log_metric, runyard.start_run, runyard.tracking._parts([(0, 1, 'k', 'v', 0, 0)])"
    out = subprocess.run([exe, "-I", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_log_call_costs_a_few_microseconds_even_while_the_server_is_unreachable():
    """A tight loop logging 10,000 points a second must not be slowed: the call only queues."""
    code = """
import os, time, runyard
runyard.log_metric("loss", 0.0)
n = 200_000
t = time.perf_counter()
for i in range(n):
    runyard.log_metric("loss", 0.5, step=i)
print((time.perf_counter() - t) / n * 1e6, flush=True)
os._exit(0)
"""
    env = {"PYTHONPATH": PACKAGE_ROOT, "RUNYARD_API_URL": "http://127.0.0.1:9", "RUNYARD_RUN_ID": "r"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    per_call_us = float(out.stdout)
    print(f"log_metric: {per_call_us:.2f} us a call")
    assert per_call_us < 20  # about 2.5 us measured on a loaded 2-core machine; 10k/s would cost 2.5%


def test_logging_outside_any_run_says_how_to_open_one():
    code = "import runyard\ntry:\n  runyard.log_metric('x', 1)\n"
    code += "except runyard.tracking.TrackingError as e:\n  print(e)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": PACKAGE_ROOT}, capture_output=True, text=True
    )
    assert "no active run" in out.stdout and "runyard.start_run" in out.stdout


def test_bad_keys_and_steps_are_refused_in_the_callers_code():
    code = """
import runyard
for call in (lambda: runyard.log_metric("a b!", 1), lambda: runyard.log_metric("../x", 1),
             lambda: runyard.log_metric("x", 1, step=1.5), lambda: runyard.log_metric("x", 1, step=2**63)):
    try:
        call()
    except ValueError as e:
        print(e)
"""
    env = {"PYTHONPATH": PACKAGE_ROOT, "RUNYARD_API_URL": "http://127.0.0.1:9", "RUNYARD_RUN_ID": "r"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert len(lines) == 4, out
    assert "invalid metric key 'a b!'" in lines[0] and "'..'" in lines[1]
    assert "invalid step 1.5" in lines[2] and "64 bits" in lines[3]
