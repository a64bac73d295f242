"""What a snapshot holds: ignore files at every level, .runyardignore, skipped dirs, symlinks, limits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from runyard.core.errors import Invalid
from runyard.workspace import MAX_FILES, collect


def write(root: Path, rel: str, text: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_entries_carry_the_sha256_the_size_and_the_mode(tmp_path):
    write(tmp_path, "train.py", "print('hi')\n")
    script = write(tmp_path, "bin/run.sh", "#!/bin/sh\n")
    script.chmod(0o755)
    files = collect(tmp_path)
    assert files["train.py"] == {
        "sha256": hashlib.sha256(b"print('hi')\n").hexdigest(),
        "size": 12,
        "mode": 0o644,
    }
    assert files["bin/run.sh"]["mode"] == 0o755


def test_root_gitignore_excludes_files_and_directories(tmp_path):
    write(tmp_path, ".gitignore", "*.log\ndata/\n")
    for rel in ("a.py", "debug.log", "data/big.csv", "sub/trace.log", "sub/b.py"):
        write(tmp_path, rel)
    assert sorted(collect(tmp_path)) == [".gitignore", "a.py", "sub/b.py"]


def test_nested_gitignore_applies_below_its_own_directory_only(tmp_path):
    write(tmp_path, "pkg/.gitignore", "*.tmp\n/local.cfg\n")
    for rel in ("top.tmp", "pkg/x.tmp", "pkg/deep/y.tmp", "pkg/local.cfg", "pkg/deep/local.cfg", "pkg/m.py"):
        write(tmp_path, rel)
    assert sorted(collect(tmp_path)) == ["pkg/.gitignore", "pkg/deep/local.cfg", "pkg/m.py", "top.tmp"]


def test_negation_brings_a_file_back(tmp_path):
    write(tmp_path, ".gitignore", "*.csv\n!keep.csv\n")
    write(tmp_path, "drop.csv")
    write(tmp_path, "keep.csv")
    assert "keep.csv" in collect(tmp_path)
    assert "drop.csv" not in collect(tmp_path)


def test_a_nested_negation_overrides_a_parent_pattern(tmp_path):
    write(tmp_path, ".gitignore", "*.json\n")
    write(tmp_path, "conf/.gitignore", "!settings.json\n")
    write(tmp_path, "conf/settings.json")
    write(tmp_path, "conf/other.json")
    files = collect(tmp_path)
    assert "conf/settings.json" in files
    assert "conf/other.json" not in files


def test_runyardignore_excludes_more_and_can_reinclude_what_git_ignores(tmp_path):
    write(tmp_path, ".gitignore", "weights.bin\n")
    write(tmp_path, ".runyardignore", "datasets/\n!weights.bin\n")
    write(tmp_path, "datasets/train.parquet")
    write(tmp_path, "weights.bin")
    write(tmp_path, "model.py")
    assert sorted(collect(tmp_path)) == [".gitignore", ".runyardignore", "model.py", "weights.bin"]


def test_vcs_caches_and_virtualenvs_are_always_skipped(tmp_path):
    skipped = [".git/HEAD", ".runyard/state", "__pycache__/m.pyc", "src/__pycache__/n.pyc", ".venv/bin/py"]
    for rel in [*skipped, "venv/lib/x.py", "src/app.py"]:
        write(tmp_path, rel)
    assert list(collect(tmp_path)) == ["src/app.py"]


def test_symlinks_out_of_the_tree_are_skipped_and_links_inside_it_are_read(tmp_path):
    outside = write(tmp_path, "outside/secret.txt", "secret")
    project = tmp_path / "project"
    write(project, "real.txt", "real")
    os.symlink(outside, project / "leak.txt")
    os.symlink(outside.parent, project / "leakdir")
    os.symlink(project / "real.txt", project / "alias.txt")
    files = collect(project)
    assert sorted(files) == ["alias.txt", "real.txt"]
    assert files["alias.txt"]["sha256"] == files["real.txt"]["sha256"]


def test_a_changed_file_gets_a_new_hash(tmp_path):
    path = write(tmp_path, "a.txt", "one")
    first = collect(tmp_path)["a.txt"]["sha256"]
    path.write_text("two!")
    assert collect(tmp_path)["a.txt"]["sha256"] == hashlib.sha256(b"two!").hexdigest() != first


def test_too_many_files_is_refused_with_advice(tmp_path):
    for i in range(MAX_FILES + 1):
        (tmp_path / f"f{i}").touch()
    with pytest.raises(Invalid, match=r"\.runyardignore"):
        collect(tmp_path)


def test_a_missing_directory_is_invalid(tmp_path):
    with pytest.raises(Invalid):
        collect(tmp_path / "nope")
