"""What an environment is made of: which files count, its id, the Python it is built on, its lock."""

from __future__ import annotations

import sys

import pytest

from runyard.services.env_build import ANSI_RE, parse_packages
from runyard.services.environments import environment_id, requires_python, source_kind
from runyard.services.pythons import Interpreter, NoInterpreter, Pythons, parse_version_request, satisfies

PY = Interpreter("3.11.7", "cpython", "/usr/bin/python3.11", "linux-x86_64 glibc 2.36")
PROJECT = '[project]\nname = "p"\nversion = "0"\nrequires-python = ">=3.10"\ndependencies = ["six"]\n'


def test_which_files_count():
    assert source_kind({"requirements.txt": "six", "pyproject.toml": PROJECT}) == (
        "requirements",
        ["requirements.txt"],
    )
    assert source_kind({"pyproject.toml": PROJECT, "uv.lock": "x"}) == (
        "uv.lock",
        ["pyproject.toml", "uv.lock"],
    )
    assert source_kind({"pyproject.toml": PROJECT}) == ("pyproject", ["pyproject.toml"])
    assert source_kind({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}) is None  # no [project]
    assert source_kind({"train.py": "", ".python-version": "3.12"}) is None
    assert requires_python({"pyproject.toml": PROJECT}) == ">=3.10"


def test_the_id_is_the_same_for_the_same_inputs_and_differs_with_any_of_them():
    base = environment_id(PY, "requirements", {"requirements.txt": "six==1.16.0\n"})
    assert base == environment_id(PY, "requirements", {"requirements.txt": "six==1.16.0\n"})
    assert base.startswith("sha256:") and len(base) == 71
    other_py = Interpreter("3.11.8", "cpython", PY.path, PY.platform)
    other_libc = Interpreter(PY.version, "cpython", PY.path, "linux-x86_64 musl 1.2")
    assert base != environment_id(other_py, "requirements", {"requirements.txt": "six==1.16.0\n"})
    assert base != environment_id(other_libc, "requirements", {"requirements.txt": "six==1.16.0\n"})
    assert base != environment_id(PY, "requirements", {"requirements.txt": "six==1.16.0\n\n"})
    other_path = Interpreter(PY.version, "cpython", "/opt/python3.11", PY.platform)  # same Python elsewhere
    assert base == environment_id(other_path, "requirements", {"requirements.txt": "six==1.16.0\n"})


def test_version_requests_and_specifiers():
    assert parse_version_request("# pinned\n3.12\n") == "3.12"
    assert parse_version_request("cpython-3.11.7") == "3.11.7"
    assert parse_version_request("pypy3.10") is None
    assert satisfies("3.11.7", ">=3.10,<3.13") and not satisfies("3.13.0", ">=3.10,<3.13")
    assert satisfies("3.11.2", "==3.11.*") and not satisfies("3.12.0", "==3.11.*")
    assert satisfies("3.11.7", "~=3.11") and not satisfies("3.10.1", "~=3.11")
    assert satisfies("3.12.1", ">=3.8,!=3.10.*") and not satisfies("3.10.4", ">=3.8,!=3.10.*")
    with pytest.raises(NoInterpreter, match="not a version specifier"):
        satisfies("3.11.0", ">= three")


def test_the_installed_interpreters_are_found_and_chosen():
    pythons = Pythons()
    found = pythons.all()
    mine = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert pythons.server_default() is not None and pythons.server_default().version == mine
    assert pythons.choose(None).version == mine
    assert pythons.choose(f"{sys.version_info.major}.{sys.version_info.minor}").version.startswith("3.")
    newest = max(found, key=lambda i: tuple(int(p) for p in i.version.split(".")))
    assert pythons.choose(None, ">=3.8").version == newest.version
    with pytest.raises(NoInterpreter, match=r"Python 3\.99 is not installed on this server \(installed: "):
        pythons.choose("3.99")
    with pytest.raises(NoInterpreter, match="no installed Python satisfies"):
        pythons.choose(None, ">=4")
    assert all(i.platform.startswith("linux") for i in found)


def test_packages_of_a_lock_and_ansi_codes():
    lock = "six==1.16.0 \\\n    --hash=sha256:ab\nfoo[extra]==2.0 ; python_version >= '3'\nbar @ file:///x.tar.gz\n"
    assert parse_packages(lock) == [
        {"name": "six", "version": "1.16.0"},
        {"name": "foo", "version": "2.0"},
        {"name": "bar", "version": "file:///x.tar.gz"},
    ]
    assert ANSI_RE.sub("", "\x1b[31mx\x1b[0m No solution") == "x No solution"
