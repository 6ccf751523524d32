"""The drill's measuring instrument: ProbeSession, the one entry point the drill flow calls.

    session = ProbeSession(spec.probes, spec.slo, series_dir, on_event=journal.append)
    session.start()                  # probes start; window "baseline"
    session.mark_window("during")    # migration starts; a breach now sets session.abort_event
    session.mark_window("after")     # migration ended
    report = session.stop()          # SessionReport; report.checks(spec.slo), report.observed_downtime_ms

`isolation="process"` (default) runs the engine (livedrill.probe.threaded) in a child process so that
the caller's threads cannot delay the stamping of answers (see livedrill.probe.process for the
measurement that motivated it); `isolation="thread"` runs it in a thread of this process, for callers that
have nothing else running. Both write the same series files and return the same report.

`on_event` receives TimelineEvents (window marks, gaps above the threshold as they close, the abort
signal) on a background thread; keep it quick and thread-safe.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Literal, Sequence

from livedrill.outcomes import TimelineEvent
from livedrill.probe.process import ProcessProbeSession
from livedrill.probe.report import ProbeReport, SessionReport
from livedrill.probe.threaded import Probe, ProbeLive, SessionConfig, ThreadProbeSession
from livedrill.spec import SLO

__all__ = ["ProbeSession", "SessionConfig", "SessionReport", "ProbeReport", "ProbeLive"]


class ProbeSession:
    def __init__(
        self,
        probes: Sequence[Probe],
        slo: SLO,
        series_dir: Path,
        gap_threshold_ms: float | None = None,
        on_event: Callable[[TimelineEvent], None] | None = None,
        config: SessionConfig = SessionConfig(),
        isolation: Literal["process", "thread"] = "process",
    ):
        engine = ProcessProbeSession if isolation == "process" else ThreadProbeSession
        self._engine = engine(probes, slo, series_dir, gap_threshold_ms, on_event, config)
        self.isolation = isolation

    @property
    def abort_event(self) -> threading.Event:
        """Set when a stop condition fires in the "during" window: the migration step cancels the migration."""
        return self._engine.abort_event

    @property
    def breach(self) -> str | None:
        """Which probe, which condition, which figures; None while no stop condition fired."""
        return self._engine.breach

    @property
    def run_id(self) -> str | None:
        """Part of every transaction id this session writes (`ld-<run_id>-<probe index>-<seq>`)."""
        return self._engine.run_id

    @property
    def engine_pid(self) -> int:
        """The process whose CPU time the probes use (the child, or this process with isolation="thread")."""
        return self._engine.pid

    def start(self) -> None:
        self._engine.start()

    def mark_window(self, window: str) -> None:
        self._engine.mark_window(window)

    def live(self) -> list[ProbeLive]:
        return self._engine.live()

    def stop(self) -> SessionReport:
        return self._engine.stop()
