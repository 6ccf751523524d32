"""What the operator's terminal shows while a drill runs: the stage, then live figures on one line."""

from __future__ import annotations

import sys

from livedrill.progress import ProgressEvent, status_line


def announce(stage: str, detail: str = "") -> None:
    sys.stderr.write(f"== {stage}{': ' + detail if detail else ''}\n")
    sys.stderr.flush()


class TerminalStatus:
    """One status line rendered from each progress event, rewritten in place on a terminal, printed every few
    updates elsewhere."""

    def __init__(self, stream=None, every: int = 10):
        # sys.stderr as it is now, not as it was at import: a caller (a test's capture, a host program) may replace it.
        stream = stream if stream is not None else sys.stderr
        self.stream, self.every, self.count = stream, every, 0
        self.tty = stream.isatty()

    def __call__(self, event: ProgressEvent) -> None:
        text = status_line(event)
        self.count += 1
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
        elif (self.count - 1) % self.every == 0:  # the first, then every `every`-th
            self.stream.write(text + "\n")

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
