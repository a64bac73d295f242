"""The README's install-and-start command, run as a new user would: on a fresh clone, with the
distribution's own python3 (externally managed, PEP 668) first on PATH and a home of its own."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def readme_setup_commands() -> list[str]:
    """The shell blocks of the README's "Set up" section, in order: install-and-start, install-and-test."""
    section = (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_the_readme_keeps_exactly_two_set_up_commands():
    install, test = readme_setup_commands()
    assert "pip install" not in install  # a distribution's python3 refuses it (PEP 668)
    assert test == "bash scripts/test.sh"


def user_cache_env() -> dict[str, str]:
    """This user's pip cache, so the new home reuses the wheels the test set-up already fetched."""
    cache = os.environ.get("PIP_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
    )
    return {"PIP_CACHE_DIR": cache, "PIP_NO_COMPILE": "1"}  # bytecode is compiled on first use instead


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no distribution python3 at /usr/bin/python3")
@pytest.mark.timeout(600)
def test_install_and_start_works_with_the_distributions_python(tmp_path):
    install, _ = readme_setup_commands()
    clone, home = tmp_path / "runyard", tmp_path / "home"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "VIRTUAL_ENV", "PYTHON"))}
    env = {**keep, **user_cache_env(), "HOME": str(home), "PATH": f"/usr/bin:/bin:{os.environ['PATH']}"}
    env.pop("XDG_DATA_HOME", None)
    command = home / ".local/bin/runyard"
    try:
        first = install_and_start(install, clone, env)
        assert f"the runyard command is {command}" in first["stdout"]
        version = subprocess.run([command, "version"], env=env, capture_output=True, text=True, timeout=60)
        assert version.stdout.startswith("runyard "), version.stderr
        venv = (home / ".local/share/runyard/venv/pyvenv.cfg").read_text()
        assert f"home = {SYSTEM_PYTHON.parent}" in venv  # made by the distribution's python3
        again = install_and_start(install, clone, env)  # an upgrade: the server restarts on the new code
        assert again["pid"] != first["pid"]
    finally:
        if command.exists():
            subprocess.run([command, "down"], env=env, capture_output=True, timeout=60)
        _kill_leftover(home)


def install_and_start(install: str, clone: Path, env: dict[str, str]) -> dict:
    """Run the README's command; return the server.json of the server it left running, and its stdout."""
    proc = subprocess.run(
        ["bash", "-c", install], cwd=clone, env=env, capture_output=True, text=True, timeout=540
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((Path(env["HOME"]) / ".runyard/server.json").read_text())
    assert proc.stdout.strip().splitlines()[-1] == info["url"]
    assert httpx.get(info["url"] + "/healthz", timeout=10).status_code == 200
    return {**info, "stdout": proc.stdout}


def _kill_leftover(home: Path) -> None:
    """If `runyard down` could not stop the server, do not leave it running after the test."""
    try:
        pid = json.loads((home / ".runyard/server.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the server leads its own session: its launcher goes too
