"""The terminal status line of `runyard env build` paints each log line as it comes, even when the build
ends before the spinner's next tick (CI: a 0.4 s build painted only its last line, on stop)."""

from __future__ import annotations

import io

import pytest

from runyard.cli.environments import BuildProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_line_is_painted_on_the_terminal_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    monkeypatch.setenv("TERM", "xterm-256color")
    with BuildProgress("building environment sha256:abc") as progress:
        progress.line("installing six==1.16.0")
        progress.line("installed in 0.1 s")
    assert "building environment sha256:abc" in screen.getvalue()
    assert "installing six==1.16.0" in screen.getvalue()
    assert "installed in 0.1 s" in screen.getvalue()


def test_without_a_terminal_each_line_is_written_after_the_title(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr("sys.stderr", screen)
    with BuildProgress("building environment sha256:abc") as progress:
        progress.line("installing six==1.16.0")
        progress.line("   ")
    lines = screen.getvalue().splitlines()
    assert lines[0].endswith("building environment sha256:abc")
    assert lines[1:] == ["installing six==1.16.0"]
