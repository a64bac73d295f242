"""Following a run's logs to its end, and what Ctrl-C means meanwhile: stop the run, or detach from it.

On a terminal Ctrl-C asks (default: detach). Without one, a first Ctrl-C stops the run and keeps following
until it ends; a second detaches. Ctrl-C closes the log stream, so following resumes on a fresh one from the
time of the last line printed, and skips the lines already printed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from runyard.cli.errors import INTERRUPTED_EXIT, note
from runyard.cli.output import Output, echo, paint, to_yaml
from runyard.core.phases import TERMINAL
from runyard.rest import LogEnd

if TYPE_CHECKING:
    from datetime import datetime

    from runyard.rest import LogLine, Rest


def print_line(line: LogLine, timestamps: bool = False, output: Output = Output.TABLE) -> None:
    """As text: stdout lines to stdout, stderr lines to stderr, the platform's own messages dimmed on
    stderr. As json (one object a line) or yaml (a document a line): every entry on stdout, with its
    time and stream."""
    if output is not Output.TABLE:
        entry = {
            "time": line.time.isoformat() if line.time else None,
            "stream": line.stream,
            "text": line.text,
        }
        sys.stdout.write(json.dumps(entry) + "\n" if output is Output.JSON else "---\n" + to_yaml(entry))
        sys.stdout.flush()
        return
    text = line.text[:-1] if line.text.endswith("\n") else line.text
    if timestamps and line.time is not None:
        text = f"{line.time.isoformat()} {text}"
    if line.stream == "system":
        echo(paint(text, "bright_black"), err=True)
        return
    stream = sys.stderr if line.stream == "stderr" else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def exit_code(phase: str, code: int | None) -> int:
    """The CLI's exit status for a finished run: its own, 1 if it failed without one, 130 if cancelled."""
    if phase == "Succeeded":
        return 0
    if phase == "Cancelled":
        return INTERRUPTED_EXIT
    if code is None or code == 0:
        return 1
    return 128 - code if code < 0 else min(code, 255)  # killed by signal N: 128 + N, as shells say


class Follower:
    """Prints a run's logs as they arrive and returns the exit status the CLI should end with."""

    def __init__(
        self,
        rest: Rest,
        name: str,
        timestamps: bool = False,
        may_stop: bool = True,
        output: Output = Output.TABLE,
        tail: int | None = None,
        since: str | None = None,
    ):
        self.rest, self.name, self.timestamps, self.may_stop = rest, name, timestamps, may_stop
        self.output, self.tail, self.since = output, tail, since
        self.last: datetime | None = None  # the time of the last line printed,
        self.at_last: set[LogLine] = set()  # and the lines printed with that time
        self.stopping = False
        self.detached = False

    def follow(self) -> int:
        while True:
            try:
                end = self._stream()
            except KeyboardInterrupt:
                if not self._stop_instead_of_detach():
                    return self._detach()
                continue
            if end is not None:
                return exit_code(end.phase, end.exit_code)

    def _stream(self) -> LogEnd | None:
        """Follow on a fresh stream; a resumed one starts at the last line printed and skips what was."""
        resumed = self.last is not None
        tail, since = (None, self.last.isoformat()) if self.last is not None else (self.tail, self.since)
        for item in self.rest.logs(self.name, follow=True, tail=tail, since=since):
            if isinstance(item, LogEnd):
                return item
            if resumed and item.time is not None and self._printed_already(item):
                continue
            if item.time is not None:  # noted before it is printed: a Ctrl-C right after must not repeat it
                if item.time != self.last:
                    self.last, self.at_last = item.time, set()
                self.at_last.add(item)
            print_line(item, self.timestamps, self.output)
        return self._ended_without_end()

    def _printed_already(self, line: LogLine) -> bool:
        assert line.time is not None and self.last is not None
        return line.time < self.last or (line.time == self.last and line in self.at_last)

    def _ended_without_end(self) -> LogEnd | None:
        """The stream closed early (a server restart?): finish if the run has, else follow again."""
        status = self.rest.get("runs", self.name).get("status") or {}
        if status.get("phase") in TERMINAL:
            return LogEnd(
                status["phase"], status.get("exitCode"), status.get("reason"), status.get("message")
            )
        time.sleep(0.5)
        return None

    def _stop_instead_of_detach(self) -> bool:
        if not self.may_stop or self.stopping:
            return False
        try:
            if sys.stdin.isatty() and not self._ask_to_stop():
                return False
            note(f"stopping run {self.name} (Ctrl-C again to detach)")
            self.stopping = True
            self.rest.stop(self.name)
        except (KeyboardInterrupt, EOFError):
            return False
        return True

    def _ask_to_stop(self) -> bool:
        import click

        note("")
        answer = click.prompt(
            "Stop the run, or detach and leave it running?",
            type=click.Choice(["stop", "detach"]),
            default="detach",
            err=True,
        )
        return bool(answer == "stop")

    def _detach(self) -> int:
        self.detached = True
        what = "is stopping" if self.stopping else "keeps running"
        note(f"detached: run {self.name} {what}; reattach with `runyard logs -f {self.name}`")
        return INTERRUPTED_EXIT
