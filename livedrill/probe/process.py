"""The probe engine in its own process, driven over a pipe from the drill's process.

Why: the engine stamps each answer when it arrives, and that needs the GIL. Inside a Prefect worker, other
threads (the flow, API clients decoding large objects) hold it for up to `sys.getswitchinterval()` (5 ms)
at a time, repeatedly; measured with a CPU-bound host thread, in-process probes showed gaps of 30-70 ms
that did not exist. A child process has its own interpreter, so only the OS scheduler stands between an
answer and its stamp.

Protocol (tuples over a multiprocessing Pipe):
    parent -> child: ("mark", window, monotonic t) | ("stop",)
    child -> parent: ("started", run_id) | ("event", TimelineEvent dict) | ("breach", text, t)
                     | ("live", [ProbeLive dict]) | ("report", SessionReport dict) | ("error", text)
CLOCK_MONOTONIC is system-wide, so times taken in either process are on one time line.
If the parent goes away, the child stops its probes and exits (EOF on the pipe).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from pydantic import TypeAdapter

from livedrill.outcomes import TimelineEvent
from livedrill.probe.report import SessionReport
from livedrill.probe.series import WINDOWS
from livedrill.probe.threaded import (
    Probe,
    ProbeLive,
    SessionConfig,
    ThreadProbeSession,
    check_window_order,
    stop_budget_s,
)
from livedrill.spec import SLO

log = logging.getLogger(__name__)
PROBES = TypeAdapter(list[Probe])


def _child_main(conn, probes_json: list, slo_json: dict, series_dir: str, gap_threshold_ms: float | None,
                config: SessionConfig) -> None:
    send_lock = threading.Lock()  # the probe thread (events) and this thread (live, report) both send

    def send(message: tuple) -> None:
        with send_lock:
            try:
                conn.send(message)
            except (BrokenPipeError, ConnectionResetError, EOFError):
                pass  # the parent is gone; the loop below notices and stops

    session: ThreadProbeSession | None = None

    def forward(event: TimelineEvent) -> None:
        if event.kind == "abort-signal" and session is not None:
            send(("breach", session.breach, session.breach_monotonic))
        send(("event", event.model_dump(mode="json")))

    try:
        session = ThreadProbeSession(PROBES.validate_python(probes_json), SLO.model_validate(slo_json), Path(series_dir),
                                     gap_threshold_ms, on_event=forward, config=config)
        session.start()
    except Exception as exc:
        send(("error", f"{type(exc).__name__}: {exc}"))
        return
    send(("started", session.run_id))
    while True:
        if conn.poll(config.live_push_interval_s):
            try:
                message = conn.recv()
            except (EOFError, ConnectionResetError):
                message = ("stop",)
            if message[0] == "mark":
                session.mark_window(message[1], message[2])
            elif message[0] == "stop":
                break
        send(("live", [p.model_dump() for p in session.live()]))
    try:
        report = session.stop()
    except Exception as exc:
        send(("error", f"{type(exc).__name__}: {exc}"))
        return
    send(("report", report.model_dump(mode="json")))


class ProcessProbeSession:
    """Same interface as ThreadProbeSession; the probes run in a child process."""

    def __init__(
        self,
        probes: Sequence[Probe],
        slo: SLO,
        series_dir: Path,
        gap_threshold_ms: float | None = None,
        on_event: Callable[[TimelineEvent], None] | None = None,
        config: SessionConfig = SessionConfig(),
    ):
        if not probes:
            raise ValueError("a probe session needs at least one probe")
        self.probes = list(probes)
        self.slo = slo
        self.series_dir = Path(series_dir)
        self.gap_threshold_ms = gap_threshold_ms
        self.on_event = on_event
        self.config = config
        self.abort_event = threading.Event()
        self.breach: str | None = None
        self.breach_monotonic: float | None = None
        self.run_id: str | None = None
        self._window = WINDOWS[0]
        self._live: list[ProbeLive] = []
        self._report: SessionReport | None = None
        self._error: str | None = None
        self._done = threading.Event()
        self._started = threading.Event()  # set on "started", or when the child failed or vanished first
        self._send_lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("session already started")
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child_main, name="livedrill-probes", daemon=True,
            args=(child_conn, [p.model_dump(mode="json", by_alias=True) for p in self.probes],
                  self.slo.model_dump(mode="json"), str(self.series_dir), self.gap_threshold_ms, self.config),
        )
        self._proc.start()
        child_conn.close()
        self._listener = threading.Thread(target=self._listen, name="livedrill-probe-listener", daemon=True)
        self._listener.start()
        if not self._started.wait(self.config.child_start_timeout_s):
            self._end_child()
            raise RuntimeError(f"the probe process did not start within {self.config.child_start_timeout_s:g} s")
        if self.run_id is None:
            self._end_child()
            raise RuntimeError(f"the probe process could not start: {self._error or f'exit code {self._proc.exitcode}'}")

    def mark_window(self, window: str) -> None:
        check_window_order(self._window, window)
        t = time.monotonic()
        self._window = window
        self._send(("mark", window, t))

    def live(self) -> list[ProbeLive]:
        return list(self._live)

    def stop(self) -> SessionReport:
        if self._proc is None:
            raise RuntimeError("session not started")
        sent = sum(p.sent for p in self._live)
        budget = stop_budget_s(self.probes, self.config, sent + sum(p.rate_per_s for p in self.probes))
        self._send(("stop",))
        finished = self._done.wait(timeout=budget)
        self._end_child()
        if not finished:
            raise TimeoutError(f"the probe process did not report within {budget:.0f} s")
        if self._report is None:
            raise RuntimeError(f"the probe process failed: {self._error or 'it exited without a report'}")
        return self._report

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise RuntimeError(f"the probe process is gone (exit code {self._proc.exitcode})") from exc

    def _listen(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "started":
                self.run_id = message[1]
                self._started.set()
            elif kind == "live":
                self._live = [ProbeLive.model_validate(p) for p in message[1]]
            elif kind == "breach":
                self.breach, self.breach_monotonic = message[1], message[2]
                self.abort_event.set()
            elif kind == "event":
                if self.on_event is not None:
                    try:
                        self.on_event(TimelineEvent.model_validate(message[1]))
                    except Exception:  # a broken journal callback must not stop the measurement
                        log.exception("probe on_event callback failed")
            elif kind == "report":
                self._report = SessionReport.model_validate(message[1])
                break
            elif kind == "error":
                self._error = message[1]
                break
        self._started.set()
        self._done.set()

    def _end_child(self) -> None:
        proc = self._proc
        proc.join(timeout=self.config.stop_grace_s * 10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=self.config.stop_grace_s * 10)
        if self._conn is not None:
            self._conn.close()
