"""The probe engine in its own process, driven over pipes from the drill's process.

Why: the engine stamps each answer when it arrives, and that needs the GIL. Inside a Prefect worker, other
threads (the flow, API clients decoding large objects) hold it for up to `sys.getswitchinterval()` (5 ms)
at a time, repeatedly; measured with a CPU-bound host thread, in-process probes showed gaps of 30-70 ms
that did not exist (benchmarks/probe_fidelity.py, part 3). A child process has its own interpreter, so
only the OS scheduler stands between an answer and its stamp.

The child is `python -m livedrill.probe.process` (a plain subprocess, not multiprocessing: that would
re-import the caller's __main__ in the child). Protocol: JSON, one object per line.
    parent -> child stdin:  first {"init": {...}}, then {"mark": window, "t": monotonic} | {"stop": true}
    child stdout -> parent: {"started": run_id} | {"event": TimelineEvent} | {"breach": text, "t": monotonic}
                            | {"live": [ProbeLive]} | {"report": SessionReport} | {"error": text}
The child's own fd 1 is pointed at stderr so that nothing but protocol lines reach the parent.
CLOCK_MONOTONIC is system-wide, so times taken in either process are on one time line.
If the parent goes away, the child sees EOF on stdin, stops its probes and exits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import TypeAdapter

from livedrill.outcomes import TimelineEvent
from livedrill.probe.report import SessionReport
from livedrill.probe.threaded import (
    Probe,
    ProbeLive,
    SessionConfig,
    ThreadProbeSession,
    check_window_order,
    SessionBase,
    stop_budget_s,
)
from livedrill.spec import SLO

log = logging.getLogger(__name__)
PROBES = TypeAdapter(list[Probe])


# ---------------------------------------------------------------- child


def child_main() -> int:
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    send_lock = threading.Lock()  # the probe thread (events) and the main thread (live, report) both send

    def send(message: dict) -> None:
        with send_lock:
            try:
                protocol_out.write(json.dumps(message) + "\n")
                protocol_out.flush()
            except (BrokenPipeError, ValueError):
                pass  # the parent is gone; stdin EOF stops us

    init = json.loads(sys.stdin.readline() or "{}").get("init")
    if init is None:
        send({"error": "no init line"})
        return 2
    session: ThreadProbeSession | None = None

    def forward(event: TimelineEvent) -> None:
        if event.kind == "abort-signal" and session is not None:
            send({"breach": session.breach, "t": session.breach_monotonic})
        send({"event": event.model_dump(mode="json")})

    try:
        session = ThreadProbeSession(
            PROBES.validate_python(init["probes"]), SLO.model_validate(init["slo"]), Path(init["series_dir"]),
            init["gap_threshold_ms"], on_event=forward, config=SessionConfig(**init["config"]),
        )
        session.start()
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send({"started": session.run_id})

    commands: queue.Queue = queue.Queue()

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(json.loads(line))
        commands.put({"stop": True})  # EOF: the parent is gone

    threading.Thread(target=read_commands, name="livedrill-probe-commands", daemon=True).start()
    while True:
        try:
            command = commands.get(timeout=session.config.live_push_interval_s)
        except queue.Empty:
            command = None
        if command is not None:
            if command.get("stop"):
                break
            if "mark" in command:
                session.mark_window(command["mark"], command["t"])
        send({"live": [p.model_dump() for p in session.live()]})
    try:
        report = session.stop()
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send({"report": report.model_dump(mode="json")})
    return 0


# ---------------------------------------------------------------- parent


class ProcessProbeSession(SessionBase):
    """Same interface as ThreadProbeSession; the probes run in a child process."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_id: str | None = None
        self._live: list[ProbeLive] = []
        self._report: SessionReport | None = None
        self._error: str | None = None
        self._started = threading.Event()  # set on "started", or when the child failed or vanished first
        self._done = threading.Event()
        self._send_lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("session not started")
        return self._proc.pid

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("session already started")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "livedrill.probe.process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1,
        )
        self._send({"init": {
            "probes": [p.model_dump(mode="json", by_alias=True) for p in self.probes],
            "slo": self.slo.model_dump(mode="json"), "series_dir": str(self.series_dir),
            "gap_threshold_ms": self.gap_threshold_ms, "config": dataclasses.asdict(self.config),
        }})
        threading.Thread(target=self._listen, name="livedrill-probe-listener", daemon=True).start()
        if not self._started.wait(self.config.child_start_timeout_s):
            self._end_child()
            raise RuntimeError(f"the probe process did not start within {self.config.child_start_timeout_s:g} s")
        if self.run_id is None:
            self._end_child()
            raise RuntimeError(f"the probe process could not start: {self._error or f'exit code {self._proc.poll()}'}")

    def mark_window(self, window: str) -> None:
        check_window_order(self._window, window)
        t = time.monotonic()
        self._window = window
        self._send({"mark": window, "t": t})

    def live(self) -> list[ProbeLive]:
        return list(self._live)

    def stop(self) -> SessionReport:
        if self._proc is None:
            raise RuntimeError("session not started")
        sent = sum(p.sent for p in self._live) + sum(p.rate_per_s for p in self.probes)  # + up to one push behind
        budget = stop_budget_s(self.probes, self.config, int(sent))
        try:
            self._send({"stop": True})
            finished = self._done.wait(timeout=budget)
        finally:
            self._end_child()
        if not finished:
            raise TimeoutError(f"the probe process did not report within {budget:.0f} s")
        if self._report is None:
            raise RuntimeError(f"the probe process failed: {self._error or 'it exited without a report'}")
        return self._report

    def _send(self, message: dict) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        with self._send_lock:
            try:
                self._proc.stdin.write(json.dumps(message) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise RuntimeError(f"the probe process is gone (exit code {self._proc.poll()})") from exc

    def _listen(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            message = json.loads(line)
            if "started" in message:
                self.run_id = message["started"]
                self._started.set()
            elif "live" in message:
                self._live = [ProbeLive.model_validate(p) for p in message["live"]]
            elif "breach" in message:
                self.breach, self.breach_monotonic = message["breach"], message["t"]
                self.abort_event.set()
            elif "event" in message:
                if self.on_event is not None:
                    try:
                        self.on_event(TimelineEvent.model_validate(message["event"]))
                    except Exception:  # a broken journal callback must not stop the measurement
                        log.exception("probe on_event callback failed")
            elif "report" in message:
                self._report = SessionReport.model_validate(message["report"])
            elif "error" in message:
                self._error = message["error"]
        self._started.set()
        self._done.set()

    def _end_child(self) -> None:
        proc = self._proc
        assert proc is not None
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()  # EOF: a child still running stops its probes and exits
            except BrokenPipeError:
                pass
        try:
            proc.wait(timeout=self.config.stop_grace_s * 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=self.config.stop_grace_s * 10)


if __name__ == "__main__":
    sys.exit(child_main())
