"""Following a run's logs to its end, and what Ctrl-C means meanwhile: stop the run, or detach from it.

On a terminal Ctrl-C asks (default: detach). Without one, a first Ctrl-C stops the run and keeps following
until it ends; a second detaches. Ctrl-C closes the log stream, so following resumes on a fresh one and skips
the lines already printed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from rich.markup import escape

from runyard.cli.errors import INTERRUPTED_EXIT, stderr
from runyard.cli.output import Output, to_yaml

if TYPE_CHECKING:
    from runyard.client import Client, LogEnd, LogLine


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
        stderr.print(f"[dim]{escape(text)}[/]")
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
        client: Client,
        name: str,
        timestamps: bool = False,
        may_stop: bool = True,
        output: Output = Output.TABLE,
    ):
        self.client, self.name, self.timestamps, self.may_stop = client, name, timestamps, may_stop
        self.output = output
        self.printed = 0
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
        from runyard.client import LogEnd

        skip = self.printed
        for item in self.client.logs(self.name, follow=True):
            if isinstance(item, LogEnd):
                return item
            if skip:
                skip -= 1
                continue
            print_line(item, self.timestamps, self.output)
            self.printed += 1
        return self._ended_without_end()

    def _ended_without_end(self) -> LogEnd | None:
        """The stream closed early (a server restart?): finish if the run has, else follow again."""
        from runyard.client import LogEnd
        from runyard.core.resources import Run

        status = self.client.get(Run, self.name).status
        if status.phase.is_terminal():
            return LogEnd(status.phase, status.exitCode, status.reason, status.message)
        time.sleep(0.5)
        return None

    def _stop_instead_of_detach(self) -> bool:
        if not self.may_stop or self.stopping:
            return False
        try:
            if sys.stdin.isatty() and not self._ask_to_stop():
                return False
            stderr.print(f"stopping run {self.name} (Ctrl-C again to detach)")
            self.stopping = True
            self.client.stop(self.name)
        except (KeyboardInterrupt, EOFError):
            return False
        return True

    def _ask_to_stop(self) -> bool:
        from rich.prompt import Prompt

        stderr.print()
        answer = Prompt.ask(
            "Stop the run, or detach and leave it running?",
            choices=["stop", "detach"],
            default="detach",
            console=stderr,
        )
        return answer == "stop"

    def _detach(self) -> int:
        self.detached = True
        what = "is stopping" if self.stopping else "keeps running"
        stderr.print(f"detached: run {self.name} {what}; reattach with `runyard logs -f {self.name}`")
        return INTERRUPTED_EXIT
