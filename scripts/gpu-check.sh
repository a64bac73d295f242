#!/usr/bin/env bash
# The GPU check, for a machine with at least one real NVIDIA GPU (CI has none: run it by hand there).
#
#   bash scripts/gpu-check.sh            # from the repository root; needs the venv (.venv) made by
#                                        # scripts/test.sh or `uv sync`, and the NVIDIA driver
#
# It starts a server on a temporary home with nothing simulated, prints `runyard nodes -o json` (what NVML
# found), then runs a workload with `resources: {gpu: 1}` that prints torch.cuda.device_count(), the device's
# name and CUDA_VISIBLE_DEVICES, and fails unless it sees exactly one GPU, the one NVML names at the index the
# run was given (named by its UUID in CUDA_VISIBLE_DEVICES). With two GPUs or more, two such runs hold a GPU
# each at the same time and must get different ones; a run without a GPU request must see none. Without torch (GPU_CHECK_PYTHON names an interpreter that
# has it) the workload asks the CUDA driver itself (libcuda) for the same figures, and says so.
# Exit 0: every check passed; otherwise the failed check is printed last.
#
# GPU_CHECK_SIMULATE=2 rehearses the script on a machine without GPUs: a simulated inventory of 2, and a
# workload that counts the devices CUDA_VISIBLE_DEVICES names (no device is touched). It proves the plumbing
# only; the check itself is the run without it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { echo "gpu-check: no $PY; make the venv first (bash scripts/test.sh or uv sync)" >&2; exit 2; }
RUN_PY=${GPU_CHECK_PYTHON:-}
if [ -z "$RUN_PY" ]; then  # the interpreter of the workload: the first one that has torch, else ours
  for candidate in "$PY" python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import torch" 2>/dev/null; then
      RUN_PY=$candidate; break
    fi
  done
  RUN_PY=${RUN_PY:-$PY}
fi
RUN_PY=$("$RUN_PY" -c "import sys; print(sys.executable)")  # absolute: runs start in their own directory
command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "gpu-check: no nvidia-smi on PATH (NVML may still work)"

HOME_DIR=$(mktemp -d -t runyard-gpu-check.XXXXXX)
SERVER_PID=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  rm -rf "$HOME_DIR"
  exit "$rc"
}
trap cleanup EXIT
SIMULATE=${GPU_CHECK_SIMULATE:-}
env -u RUNYARD_RUNTIME_SIMULATED_GPUS -u RUNYARD_RUNTIME_NODE_GPUS ${SIMULATE:+RUNYARD_RUNTIME_SIMULATED_GPUS=$SIMULATE} \
  "$PY" -m runyard server --home "$HOME_DIR" --port 0 >"$HOME_DIR/server.log" 2>&1 &
SERVER_PID=$!

export GPU_CHECK_HOME=$HOME_DIR GPU_CHECK_RUN_PY=$RUN_PY GPU_CHECK_SIMULATE=$SIMULATE
timeout 300 "$PY" - <<'EOF'
"""Drives the check through the API, as a user would; prints each finding, fails on the first wrong one."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from runyard.rest import LogLine, Rest

home = Path(os.environ["GPU_CHECK_HOME"])
run_py = os.environ["GPU_CHECK_RUN_PY"]
simulate = bool(os.environ.get("GPU_CHECK_SIMULATE"))


def fail(msg: str) -> None:
    print(f"gpu-check: FAILED: {msg}", flush=True)
    log = home / "server.log"
    if log.exists():
        print("--- server log (end) ---\n" + log.read_text()[-3000:], flush=True)
    sys.exit(1)


deadline = time.monotonic() + 60
while not (home / "server.json").exists() or not (home / "admin-token").exists():
    if time.monotonic() > deadline:
        fail("the server did not start within 60 s")
    time.sleep(0.1)
url = json.loads((home / "server.json").read_text())["url"]
token = (home / "admin-token").read_text().strip()
env = {**os.environ, "RUNYARD_API_URL": url, "RUNYARD_TOKEN": token}
shown = subprocess.run([sys.executable, "-m", "runyard", "nodes", "-o", "json"], env=env, capture_output=True, text=True)
print("== runyard nodes -o json\n" + shown.stdout + shown.stderr, flush=True)
if shown.returncode != 0:
    fail("runyard nodes failed")
node = json.loads(shown.stdout)["items"][0]
gpus = node["gpus"]
if node.get("gpuSource") != ("simulated" if simulate else "nvml") or not gpus:
    fail(f"NVML found no GPU (source {node.get('gpuSource')}: {node.get('gpuNote')})")
if any(g["simulated"] for g in gpus) != simulate:
    fail("a GPU is marked simulated, but nothing simulated was configured")

# The workload: what CUDA shows this process. torch when it is there, else the driver API through ctypes.
WORKLOAD = r'''
import ctypes, os, sys, time
visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


def with_torch():
    import torch

    count = torch.cuda.device_count()
    if count:
        x = torch.ones(1024, 1024, device="cuda")
        assert float((x @ x).sum()) == 1024.0**3  # it computes, on that device
    return count, [torch.cuda.get_device_name(i) for i in range(count)], "torch " + torch.__version__


def with_libcuda():
    cuda = ctypes.CDLL("libcuda.so.1")
    n = ctypes.c_int(0)
    rc = cuda.cuInit(0)  # 100: no device visible
    if rc not in (0, 100):
        sys.exit(f"cuInit failed with CUresult {rc}")
    count = 0 if rc == 100 or cuda.cuDeviceGetCount(ctypes.byref(n)) else n.value
    names = []
    for i in range(count):
        dev, buf = ctypes.c_int(0), ctypes.create_string_buffer(256)
        cuda.cuDeviceGet(ctypes.byref(dev), i)
        cuda.cuDeviceGetName(buf, 256, dev)
        names.append(buf.value.decode())
    return count, names, "libcuda (no torch in " + sys.executable + ")"


if os.environ.get("GPU_CHECK_SIMULATE"):  # the rehearsal: count the devices named, touch none
    named = [i for i in visible.split(",") if i.strip()]
    count, names, via = len(named), ["Simulated GPU"] * len(named), "a rehearsal (simulated GPUs)"
else:
    try:
        count, names, via = with_torch()
    except ImportError:
        count, names, via = with_libcuda()
print(f"count={count} names={names!r} CUDA_VISIBLE_DEVICES={visible!r} via {via}", flush=True)
time.sleep(float(sys.argv[1]))  # hold the GPU a while, so that two runs overlap
sys.exit(0 if count == int(sys.argv[2]) else 3)
'''


def submit(rest: Rest, name: str, gpu: int, hold: float) -> None:
    spec = {
        "command": [run_py, "-c", WORKLOAD, str(hold), str(gpu)],
        "environment": "system",
        "env": {"GPU_CHECK_SIMULATE": os.environ.get("GPU_CHECK_SIMULATE", "")},
        "resources": {"gpu": gpu},
        "timeoutSeconds": 180,
    }
    doc = {"apiVersion": "runyard.dev/v1", "kind": "Experiment", "metadata": {"name": name}, "spec": spec}
    rest.apply(doc)


def outcome(rest: Rest, name: str) -> tuple[dict, str]:
    done = rest.wait(name, timeout=200)
    text = "\n".join(item.text for item in rest.logs(name) if isinstance(item, LogLine))
    print(f"== run {name}: {done['status']['phase']} ({done['status'].get('message')})\n{text}", flush=True)
    return done, text


rest = Rest(url, token, "default")
two = len(gpus) >= 2
names = ["gpu-one", "gpu-two"] if two else ["gpu-one"]
for name in names:
    submit(rest, name, 1, 8.0 if two else 0.0)
submit(rest, "no-gpu", 0, 0.0)
held: dict[str, int] = {}
for name in names:
    done, text = outcome(rest, name)
    status = done["status"]
    if status["phase"] != "Succeeded":
        fail(f"run {name} did not see exactly 1 GPU (or failed): {status.get('message')}")
    index = status["allocation"]["gpus"][0]
    held[name] = index
    gpu = next(g for g in gpus if g["index"] == index)
    expected = gpu.get("uuid") or str(index)  # real GPUs are named by UUID, simulated ones by index
    if f"CUDA_VISIBLE_DEVICES='{expected}'" not in text:
        fail(f"run {name} holds GPU {index} ({expected}) but its CUDA_VISIBLE_DEVICES says otherwise")
    model = gpu["model"]
    if repr([model]) not in text:
        fail(f"run {name} holds GPU {index} ({model}) but CUDA shows it another device (device order?)")
if two:
    if held["gpu-one"] == held["gpu-two"]:
        fail(f"both runs got GPU {held['gpu-one']}")
    a, b = (rest.get("runs", n)["status"]["attempts"][0] for n in names)
    if not (a["startedAt"] < b["finishedAt"] and b["startedAt"] < a["finishedAt"]):
        fail("the two GPU runs did not run at the same time")
done, _ = outcome(rest, "no-gpu")
if done["status"]["phase"] != "Succeeded":
    fail("a run without a GPU request saw a GPU")
print(f"gpu-check: OK ({len(gpus)} GPU(s): {', '.join(g['model'] for g in gpus)}; runs got {held})", flush=True)
EOF
