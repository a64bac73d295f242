"""Following a run's logs to its end, and what Ctrl-C means meanwhile: stop the run, or detach from it.

On a terminal Ctrl-C asks (default: detach). Without one, a first Ctrl-C stops the run and keeps following
until it ends; a second detaches. Ctrl-C closes the log stream, so following resumes on a fresh one from the
time of the last line printed, and skips the lines already printed.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from runyard.cli.errors import INTERRUPTED_EXIT, note, report, warn
from runyard.cli.output import Output, echo, paint, to_yaml
from runyard.core.errors import NotFound, RunyardError
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


_ENV_ID = re.compile(r"sha256:[0-9a-f]{12,64}")
_ENV_FAILURES = ("EnvironmentBuildFailed", "EnvironmentNotFound")


class Preparation(threading.Thread):
    """Beside the log follower of `runyard run`, until the run has started: while it waits for its
    environment to be built, says so and shows the build's progress; a failed or missing environment is
    reported; a run that is not sandboxed is warned about, once. It only reads the run (a few GETs)."""

    def __init__(self, rest: Rest, name: str):
        super().__init__(daemon=True)
        self.rest, self.name = rest, name
        self.done = threading.Event()
        self.sandbox_known = False
        self.failure_reported = False
        self.followed: set[str] = set()  # the builds shown already

    def run(self) -> None:
        delay = 0.05
        while not self.done.is_set():
            try:
                status = self.rest.get("runs", self.name).get("status") or {}
            except NotFound:  # its Experiment is there; the controller has not made the run yet
                status = {}
            except RunyardError:
                return  # the follower reports what went wrong
            phase = status.get("phase")
            if phase == "Pending" and status.get("reason") == "EnvironmentBuilding":
                self._show_build(status)
                delay = 0.05
                continue
            self.look(status)
            if phase in TERMINAL or (self.sandbox_known and phase not in (None, "Pending")):
                return
            self.done.wait(delay)
            delay = min(delay * 2, 1.0)

    def finish(self, detached: bool = False) -> None:
        """The run has ended (or the user detached): let a build's progress say how it ended, then one last
        look if the sandbox was not seen."""
        self.done.set()
        if detached:
            return
        self.join(timeout=2)
        if not self.sandbox_known and not self.failure_reported:
            with contextlib.suppress(RunyardError):
                self.look(self.rest.get("runs", self.name).get("status") or {})

    def look(self, status: dict) -> None:
        """Warn about a missing sandbox, report an environment's failure: each once."""
        sandbox = status.get("sandbox")
        if sandbox and not self.sandbox_known:
            self.sandbox_known = True
            if sandbox.get("mechanism") == "none":
                warn(f"this run is not sandboxed: {sandbox.get('reason') or 'the host cannot sandbox runs'}")
        if status.get("reason") in _ENV_FAILURES and not self.failure_reported:
            self.failure_reported = True
            report(RunyardError(status.get("message") or status["reason"]))

    def _show_build(self, status: dict) -> None:
        from runyard.cli.environments import finished, follow_build

        found = _ENV_ID.search(status.get("message") or "")
        if found is None or found.group(0) in self.followed:
            self.done.wait(0.1)  # the controller starts the run (or fails it) at its next look
            return
        self.followed.add(found.group(0))
        try:
            env_id = self.rest.environment(found.group(0))["id"]
            record = follow_build(self.rest, env_id, f"building environment {env_id} for this run")
        except RunyardError:
            self.done.wait(0.2)
            return
        if finished(record):  # reported its message: the run fails with it
            self.failure_reported = True


def wait_until(
    rest: Rest,
    plural: str,
    name: str,
    line: Callable[[dict], str],
    settled: Callable[[dict], bool | None],
    colours: dict[str, str],
    goal: str,
    timeout: float,
    interval: float,
) -> dict:
    """Poll a workload until `settled(doc)` is True, saying each new `line(doc)` on stderr (coloured by
    phase); exit 1 when it is None (the workload failed: its message says why) or when it is not `goal`
    after `timeout` s."""
    from runyard.cli.errors import fail

    kind = plural.rstrip("s")
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        doc = rest.get(plural, name)
        status = doc.get("status") or {}
        phase = status.get("phase") or "Pending"
        text = line(doc)
        if text != said:
            note(paint(text, colours.get(phase)))
            said = text
        done = settled(doc)
        if done:
            return doc
        if done is None:
            raise fail(f"{kind} {name} failed: {status.get('message') or status.get('reason')}", code=1)
        if time.monotonic() > deadline:
            raise fail(
                f"{kind} {name} is not {goal} after {timeout:g} s (phase {phase})",
                code=1,
                hint=f"`runyard describe {kind} {name}` shows its events",
            )
        time.sleep(interval)
