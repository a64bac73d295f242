"""The README's commands stay true: every command line it shows names a real command and real options."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def runyard_lines() -> list[str]:
    """Every `runyard …` line of the README's shell blocks, without its comment."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("runyard ")]


@functools.cache
def help_of(*command: str) -> str:
    argv = [sys.executable, "-m", "runyard", *command, "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"`runyard {' '.join(command)}` is no command: {proc.stderr}"
    return proc.stdout


def test_the_readme_shows_runyard_commands():
    assert len(runyard_lines()) >= 10


@pytest.mark.parametrize("line", runyard_lines())
def test_each_command_line_of_the_readme_exists(line):
    words = shlex.split(line)[1:]
    global_help = help_of()
    command: list[str] = []
    while (
        words
        and not words[0].startswith("-")
        and re.search(rf"^  {re.escape(words[0])}\b", help_of(*command), re.M)
    ):
        command.append(words.pop(0))
    assert command, f"no such command in: {line}"
    shown = help_of(*command) + global_help
    for word in words:
        option = word.split("=", 1)[0]
        if option.startswith("-"):
            assert re.search(rf"(?<![\w-]){re.escape(option)}\b", shown), f"{option} is no option of: {line}"
