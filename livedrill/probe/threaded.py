"""The probe engine proper: open-loop probes at a fixed rate from a background thread, measured to the millisecond.

Used through livedrill.probe.engine.ProbeSession, which by default runs this engine in a child process
(so that the host process's other threads cannot hold the GIL while a probe's answer is being stamped).

One thread runs one asyncio loop for every probe of the session. Each probe has a scheduler that launches
probe number k at `origin + k / rate` (CLOCK_MONOTONIC) whatever happened to earlier probes: a stalled
request never delays the next send (open loop). At most `max_in_flight` probes wait at once; a send that
would exceed it is recorded as an `in-flight-limit` failure instead. A probe uses one of at most
`max_connections` keep-alive connections for its whole exchange; while all are busy (a frozen target) it
waits for one, and that wait is part of its latency, counted from its launch. Each probe is bounded by
its `timeout_ms` (a transaction's write and read-back together). Every completed probe is appended to the
probe's series file (see livedrill.probe.series), and the report is computed from those files.

Gaps are measured between successes. A success is stamped when its answer arrived (in http1, not when a
coroutine resumed), and a transaction counts from its write's acknowledgement: that is when the ledger
accepted it, while the read-back that proves it waits behind whatever the target queued during a freeze.
A freeze of F ms shows as a gap of F within about one probe period plus the target's first answer after
it resumes (see benchmarks/probe_fidelity.py). Successes become known out of order (by read-back), so
live gaps are computed from successes older than the oldest probe still in flight: nothing unknown can
precede them. In steady state that is within a probe latency; after a freeze, once the backlog resolves.

`on_event` is called from the probe thread with TimelineEvents (window marks, gaps above the threshold
as they close, the abort signal); keep it quick and thread-safe.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from livedrill.outcomes import TimelineEvent
from livedrill.probe.http1 import Http1Pool, PoolTiming, ProbeFailure, build_ssl_context
from livedrill.probe.measure import (
    DUPLICATED,
    LOST,
    VERIFIED,
    GapTracker,
    StopLimits,
    SuccessOrder,
    breach_reason,
    default_gap_threshold_ms,
    success_time,
)
from livedrill.probe.report import ProbeReport, ReconciliationReport, SessionReport
from livedrill.probe.selector import new_probe_loop
from livedrill.probe.runners import Attempt, Reconciler, Runner, RunnerContext, build_runner
from livedrill.probe.series import WINDOWS, Outcome, SeriesWriter, iter_series, ProbeRecord, safe_file_stem
from livedrill.probe.summary import summarise_series
from livedrill.probe.window import hunt_interval_s
from livedrill.spec import SLO, Probe

log = logging.getLogger(__name__)

PSI_CPU = Path("/proc/pressure/cpu")


def read_cpu_stall() -> tuple[float, float] | None:
    """(monotonic now, total µs some task waited for a CPU) from Linux PSI; None where PSI is unavailable."""
    try:
        some = PSI_CPU.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    total = next((f for f in some.split() if f.startswith("total=")), None)
    return (time.monotonic(), float(total[len("total="):])) if total else None


def check_window_order(current: str, new: str) -> None:
    if new not in WINDOWS[1:]:
        raise ValueError(f"window must be one of {WINDOWS[1:]}, got {new!r}")
    if WINDOWS.index(new) <= WINDOWS.index(current):
        raise ValueError(f"window {new!r} cannot follow {current!r}")


class ProbeLive(BaseModel):
    """A cheap snapshot for the terminal."""

    model_config = ConfigDict(extra="forbid")
    name: str
    window: str
    rate_per_s: float
    sent: int
    ok: int
    failed: int
    in_flight: int
    last_gap_ms: float | None  # the gap closed by the latest success
    current_gap_ms: float  # time since the latest success


@dataclass(frozen=True)
class SessionConfig:
    """Budgets of the session's own bookkeeping; they scale with the work, see each field."""

    idle_reuse_s: float = 4.0  # keep-alive connections idle longer are not reused (gateways drop idle ones)
    window_period_s: float = 0.5  # a peak of concurrent requests keeps the pool's window this long (probe.window)
    undelivered_after_s: float = 0.05  # beyond Linux's 40 ms minimum delayed ACK: an unacknowledged request is lost
    scout_after_s: float = 0.05  # during an outage, one request beyond the pool's window per this interval
    scouts_at_most: int = 4  # ... for 0.2 s; a target frozen longer meets at most this many extra requests
    hunt_after_periods: float = 2.0  # nothing answered for this many probe periods (and the floor): probes hunt
    hunt_after_floor_s: float = 0.002  # (see http1.Http1Pool: fresh connections find the end of a lossy outage)
    hunt_every_floor_s: float = 0.0005  # hunters go out at the probe's period, at most two per millisecond
    # A hunter needs only half a period since the last: probes are launched at the period with jitter, and asking
    # for a whole one skipped every probe that came a hair early, so hunters went out every other period (at
    # 200/s the end of 700-2,000 ms outages was found 7-11 ms late). The probe rate still bounds them to one per
    # period; a burst of probes launched together after a stall of the prober still sends one.
    hunt_every_periods: float = 0.5
    hunt_give_up_floor_s: float = 0.01  # a hunter's lost handshake is given up after 4 round trips, at least this
    hunt_give_up_rtt_factor: float = 4.0
    hunt_give_up_ceiling_s: float = 0.2  # and at most this: Linux retries a lost SYN only after 1 s
    hunters_at_most: int = 32  # sockets in handshake at once per target; one more gives up the oldest
    stop_grace_s: float = 1.0  # added to the longest probe timeout when waiting for in-flight probes at stop
    reconcile_concurrency: int = 32
    reconcile_min_budget_s: float = 10.0
    reconcile_budget_per_id_ms: float = 5.0  # the budget grows with the number of acknowledged transactions
    ids_listed_at_most: int = 1000  # in the report; the JSONL details file lists every one
    watchdog_max_interval_s: float = 0.01  # the gap watchdog runs at least this often (more often for tight SLOs)
    child_start_timeout_s: float = 30.0  # engine start: interpreter (process isolation), imports, TLS contexts
    live_push_interval_s: float = 0.25  # process isolation: how fresh live() is
    reorder_slack_s: float = 1.0  # a probe may be recorded this much later than its timeout (event-loop stalls)


@dataclass
class _ProbeState:
    probe: Probe
    runner: Runner
    writer: SeriesWriter
    series_path: Path
    period: float
    timeout_s: float
    gaps: GapTracker  # fed in time order through `order`, for live gap events
    order: SuccessOrder
    origin: float = 0.0
    launched: collections.deque = field(default_factory=collections.deque)  # seqs in flight, in launch order
    settled: set = field(default_factory=set)  # seqs that finished while an older one was still in flight
    sent: int = 0
    ok: int = 0
    failed: int = 0
    abandoned: int = 0
    in_flight: int = 0
    streak: int = 0
    last_ok: float | None = None  # the latest success known so far (the abort signal's clock)
    tasks: set = field(default_factory=set)
    in_flight_at_stop: int = 0
    reconciliation: ReconciliationReport | None = None


def stop_budget_s(probes: Sequence[Probe], cfg: SessionConfig, sent: int) -> float:
    """How long stop() may take: draining, reconciliation and summary all grow with what was sent."""
    drain = max(p.timeout_ms for p in probes) / 1000.0 + 2 * cfg.stop_grace_s
    # the reconciliation budget grows with the acknowledged writes, bounded above by everything sent
    reconcile = len(probes) * (cfg.reconcile_min_budget_s + sent * cfg.reconcile_budget_per_id_ms / 1000.0)
    summary_read = 10.0 + sent * 30e-6  # two streamed passes; measured 6 µs per record on this 2-core lab host, busy
    return drain + reconcile + summary_read


class SessionBase:
    """What every probe session is given, checked once; the thread and process engines add their own state."""

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
        names = [p.name for p in probes]
        if len(set(names)) != len(names):
            raise ValueError(f"probe names must be unique, got {names}")
        self.probes = list(probes)
        self.slo = slo
        self.series_dir = Path(series_dir)
        self.gap_threshold_ms = gap_threshold_ms
        self.on_event = on_event
        self.config = config
        self.abort_event = threading.Event()
        self.breach: str | None = None
        self.breach_monotonic: float | None = None
        self._window = WINDOWS[0]


class ThreadProbeSession(SessionBase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        slo = self.slo
        self.limits = StopLimits(max_gap_ms=slo.max_downtime_ms, max_failed=slo.max_failed_requests,
                                 max_failure_streak=slo.max_failure_streak)
        self.run_id = secrets.token_hex(6)
        self._states: list[_ProbeState] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop_requested: asyncio.Event | None = None
        self._stopping = False
        self._stopped_monotonic: float | None = None
        self._failure: BaseException | None = None
        self._started_at: datetime | None = None
        self._psi_start: tuple[float, float] | None = None
        self._psi_stop: tuple[float, float] | None = None

    # ------------------------------------------------------------ public API (any thread)

    @property
    def pid(self) -> int:
        return os.getpid()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("session already started")
        self.series_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._thread_main, name="livedrill-probes", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=self.config.child_start_timeout_s):
            raise RuntimeError("the probe thread did not start")
        if self._failure is not None:
            raise self._failure

    def mark_window(self, window: str, t: float | None = None) -> None:
        """Start window `during` (migration start) or `after` (migration end) at monotonic t (default: now)."""
        check_window_order(self._window, window)
        t = time.monotonic() if t is None else t
        self._window = window
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._write_marks, window, t)

    def live(self) -> list[ProbeLive]:
        now = time.monotonic()
        return [
            ProbeLive(name=s.probe.name, window=self._window, rate_per_s=s.probe.rate_per_s, sent=s.sent, ok=s.ok,
                      failed=s.failed, in_flight=s.in_flight,
                      last_gap_ms=s.gaps.last.ms if s.gaps.last is not None else None,
                      current_gap_ms=(now - (s.last_ok if s.last_ok is not None else s.origin)) * 1000.0)
            for s in self._states
        ]

    def stop(self) -> SessionReport:
        """Stop sending, wait for in-flight probes (bounded), reconcile, and summarise from the series."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("session not started")
        if not self._stopping:
            self._stopping = True
            self._loop.call_soon_threadsafe(self._request_stop)
        self._thread.join(timeout=self._join_budget_s())
        if self._thread.is_alive():
            raise TimeoutError("the probe thread did not finish within its budget")
        if self._failure is not None:
            raise self._failure
        assert self._stopped_monotonic is not None
        return SessionReport(
            probes=[self._probe_report(s) for s in self._states],
            breach=self.breach,
            breach_monotonic=self.breach_monotonic,
        )

    # ------------------------------------------------------------ probe thread

    def _thread_main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=new_probe_loop) as runner:
                runner.run(self._main())
        except BaseException as exc:  # surfaced by start()/stop() in the caller's thread
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        all_pools: list[dict] = []
        try:
            self._build_states(all_pools)
            self._ready.set()
            schedulers = [asyncio.create_task(self._schedule(s)) for s in self._states]
            watchdog = asyncio.create_task(self._watchdog())
            await self._stop_requested.wait()
            self._stopped_monotonic = time.monotonic()
            self._psi_stop = read_cpu_stall()
            for task in schedulers:
                task.cancel()
            watchdog.cancel()
            await asyncio.gather(*schedulers, watchdog, return_exceptions=True)
            await self._drain()
            for s in self._states:
                s.writer.close()
                self._release_gaps(s, s.order.release_all())
            for s in self._states:
                reconciler = s.runner.reconciler()
                if reconciler is not None:
                    s.reconciliation = await self._reconcile(s, reconciler)
        finally:
            for s in self._states:
                s.writer.close()
            for pools in all_pools:
                for pool in pools.values():
                    pool.close()

    def _build_states(self, all_pools: list[dict[object, Http1Pool]]) -> None:
        wall, origin = time.time(), time.monotonic()
        self._psi_start = read_cpu_stall()
        self._started_at = datetime.fromtimestamp(wall, timezone.utc)
        cfg = self.config
        timing = PoolTiming(cfg.idle_reuse_s, cfg.window_period_s, cfg.undelivered_after_s, cfg.scout_after_s,
                            cfg.scouts_at_most, cfg.hunt_after_floor_s, cfg.hunt_every_floor_s, cfg.hunt_give_up_floor_s,
                            cfg.hunt_give_up_rtt_factor, cfg.hunt_give_up_ceiling_s, cfg.hunters_at_most)
        for index, probe in enumerate(self.probes):
            period = 1.0 / probe.rate_per_s
            timing = dataclasses.replace(timing, hunt_after_s=max(cfg.hunt_after_floor_s, cfg.hunt_after_periods * period),
                                         hunt_every_s=hunt_interval_s(period, cfg.hunt_every_floor_s, cfg.hunt_every_periods))
            pools = {}  # per probe: probes of one origin may differ in TLS identity
            all_pools.append(pools)
            uses_https = any(url.startswith("https://") for url in probe.urls)
            ssl_context = build_ssl_context(probe.tls) if probe.tls is not None or uses_https else None
            runner = build_runner(probe, RunnerContext(f"ld-{self.run_id}-{index}-", pools, ssl_context, timing))
            path = self.series_dir / f"{safe_file_stem(probe.name)}.series"
            header = {
                "probe": probe.name, "kind": probe.kind, "vm": str(probe.vm), "target": probe.target,
                "rate_per_s": probe.rate_per_s, "timeout_ms": probe.timeout_ms, "max_in_flight": probe.max_in_flight,
                "txid_prefix": runner.txid_prefix,
                "run_id": self.run_id, "first_send_monotonic": origin,
            }
            writer = SeriesWriter(path, header, (wall, origin))
            writer.mark(WINDOWS[0], origin)
            self._states.append(_ProbeState(
                probe=probe, runner=runner, writer=writer, series_path=path, period=1.0 / probe.rate_per_s,
                timeout_s=probe.timeout_ms / 1000.0, origin=origin,
                gaps=GapTracker(origin=origin, threshold_ms=self._threshold_ms(probe)),
                order=SuccessOrder()))
        self._emit("window", origin, {"window": WINDOWS[0]})

    def _request_stop(self) -> None:
        assert self._stop_requested is not None
        self._stop_requested.set()

    def _write_marks(self, window: str, t: float) -> None:
        for s in self._states:
            s.writer.mark(window, t)
        self._emit("window", t, {"window": window})

    async def _schedule(self, s: _ProbeState) -> None:
        k = 0
        while True:
            now = time.monotonic()
            due = s.origin + k * s.period
            if due > now:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            while s.origin + k * s.period <= now:  # everything due now, even after a stall: open loop
                self._launch(s, k, s.origin + k * s.period)
                k += 1

    def _launch(self, s: _ProbeState, seq: int, t_sched: float) -> None:
        s.sent += 1
        if s.in_flight >= s.probe.max_in_flight:
            now = time.monotonic()
            self._record(s, seq, t_sched, now, None, now, Outcome.IN_FLIGHT_LIMIT, 0, 0)
            return
        s.in_flight += 1
        s.launched.append(seq)
        task = asyncio.get_running_loop().create_task(self._one(s, seq, t_sched))
        s.tasks.add(task)
        task.add_done_callback(s.tasks.discard)

    async def _one(self, s: _ProbeState, seq: int, t_sched: float) -> None:
        attempt = Attempt()
        t_start = time.monotonic()
        outcome = Outcome.OK
        try:
            async with asyncio.timeout(s.timeout_s):
                await s.runner.once(seq, attempt)
        except ProbeFailure as failure:
            outcome = failure.outcome
        except TimeoutError:
            outcome = Outcome.TIMEOUT
        except asyncio.CancelledError:
            self._settle(s, seq)
            self._record(s, seq, t_sched, t_start, attempt.t_ack, time.monotonic(), Outcome.UNRESOLVED_AT_STOP,
                         attempt.step, attempt.status)
            raise
        self._settle(s, seq)
        # a success is stamped when its answer arrived, not when this coroutine resumed (see http1)
        t_end = attempt.t_done if outcome == Outcome.OK and attempt.t_done is not None else time.monotonic()
        self._record(s, seq, t_sched, t_start, attempt.t_ack, t_end, outcome, attempt.step, attempt.status)

    def _record(self, s: _ProbeState, seq: int, t_sched: float, t_start: float, t_ack: float | None, t_end: float,
                outcome: Outcome, step: int, status: int) -> None:
        s.writer.append(seq, t_sched, t_start, t_ack, t_end, outcome, step, status)
        if outcome == Outcome.OK:
            s.ok += 1
            s.streak = 0
            t_success = success_time(t_ack, t_end)
            if s.last_ok is None or t_success > s.last_ok:
                s.last_ok = t_success
            s.order.add(t_success)
            self._release_gaps(s, s.order.release(self._known_until(s)))
        elif outcome == Outcome.ABANDONED:  # never delivered: the service neither failed nor served it
            s.abandoned += 1
        else:
            s.failed += 1
            s.streak += 1
            self._check_breach(s, t_end)

    def _settle(self, s: _ProbeState, seq: int) -> None:
        s.in_flight -= 1
        s.settled.add(seq)
        while s.launched and s.launched[0] in s.settled:
            s.settled.remove(s.launched.popleft())

    @staticmethod
    def _known_until(s: _ProbeState) -> float:
        """Every success up to this time is known: a probe still in flight succeeds after it was scheduled."""
        return s.origin + s.launched[0] * s.period if s.launched else time.monotonic()

    def _release_gaps(self, s: _ProbeState, successes: list[float]) -> None:
        for t in successes:
            gap = s.gaps.ok(t)
            if gap is not None:
                self._emit("gap", gap.end, {"probe": s.probe.name, "gap_ms": round(gap.ms, 3),
                                            "start_monotonic": gap.start, "end_monotonic": gap.end})

    def _threshold_ms(self, probe: Probe) -> float:
        return self.gap_threshold_ms if self.gap_threshold_ms is not None else default_gap_threshold_ms(probe.rate_per_s)

    def _check_breach(self, s: _ProbeState, now: float) -> None:
        if self.breach is not None:
            return
        reason = breach_reason(window=self._window, now=now, last_ok=s.last_ok if s.last_ok is not None else s.origin,
                               failed_total=sum(x.failed for x in self._states), failure_streak=s.streak,
                               limits=self.limits)
        if reason is not None:
            self.breach = f"probe {s.probe.name}: {reason}"
            self.breach_monotonic = now
            self.abort_event.set()
            self._emit("abort-signal", now, {"probe": s.probe.name, "reason": reason})

    async def _watchdog(self) -> None:
        interval = min(self.config.watchdog_max_interval_s, self.slo.max_downtime_ms / 1000.0 / 20)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for s in self._states:
                self._check_breach(s, now)
                self._release_gaps(s, s.order.release(self._known_until(s)))

    async def _drain(self) -> None:
        pending = [t for s in self._states for t in s.tasks]
        for s in self._states:
            s.in_flight_at_stop = len(s.tasks)
        if not pending:
            return
        wait_s = max(s.timeout_s for s in self._states) + self.config.stop_grace_s
        _, still = await asyncio.wait(pending, timeout=wait_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=self.config.stop_grace_s)

    async def _reconcile(self, s: _ProbeState, reconciler: Reconciler) -> ReconciliationReport:
        """Read back every acknowledged transaction once more, streaming the ids from the series file."""
        cfg = self.config
        acknowledged = sum(1 for r in iter_series(s.series_path) if isinstance(r, ProbeRecord) and r.t_ack is not None)
        budget_s = max(cfg.reconcile_min_budget_s, acknowledged * cfg.reconcile_budget_per_id_ms / 1000.0)
        deadline = time.monotonic() + budget_s
        started = time.monotonic()
        counts = {VERIFIED: 0, LOST: 0, DUPLICATED: 0, "unverifiable": 0}
        listed: dict[str, list[str]] = {LOST: [], DUPLICATED: [], "unverifiable": []}
        details_path = s.series_path.with_suffix(".reconcile.jsonl")
        semaphore = asyncio.Semaphore(cfg.reconcile_concurrency)
        exhausted: list[str] = []  # ids left unread because the budget ran out

        with open(details_path, "w", encoding="utf-8") as details:

            def note(txid: str, verdict: str, status: int | None) -> None:
                counts[verdict] += 1
                if verdict != VERIFIED:
                    details.write(json.dumps({"id": txid, "verdict": verdict, "status": status}) + "\n")
                    if len(listed[verdict]) < cfg.ids_listed_at_most:
                        listed[verdict].append(txid)

            async def check(txid: str) -> None:
                verdict, status = "unverifiable", None
                try:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        exhausted.append(txid)
                        return
                    async with asyncio.timeout(min(s.timeout_s, remaining)):
                        verdict, status = await reconciler.reconcile_one(txid)
                except TimeoutError:
                    verdict, status = "unverifiable", None
                finally:
                    semaphore.release()
                    note(txid, verdict, status)

            tasks = set()
            for rec in iter_series(s.series_path):
                if not isinstance(rec, ProbeRecord) or rec.t_ack is None:
                    continue
                await semaphore.acquire()
                task = asyncio.create_task(check(reconciler.txid(rec.seq)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(set(tasks))
        return ReconciliationReport(
            acknowledged=acknowledged, verified=counts[VERIFIED], lost=counts[LOST], duplicated=counts[DUPLICATED],
            unverifiable=counts["unverifiable"], lost_ids=listed[LOST], duplicated_ids=listed[DUPLICATED],
            unverifiable_ids=listed["unverifiable"], ids_listed_at_most=cfg.ids_listed_at_most, budget_s=budget_s,
            budget_exhausted=bool(exhausted), duration_s=round(time.monotonic() - started, 3),
            details_file=details_path.name,
        )

    def _join_budget_s(self) -> float:
        return stop_budget_s(self.probes, self.config, sum(s.sent for s in self._states))

    def _emit(self, kind: str, t: float, detail: dict) -> None:
        if self.on_event is None:
            return
        wall = datetime.fromtimestamp(time.time() - (time.monotonic() - t), timezone.utc)
        try:
            self.on_event(TimelineEvent(at=wall, monotonic=t, source="probe", kind=kind, detail=detail))
        except Exception:  # a broken journal callback must not stop the measurement
            log.exception("probe on_event callback failed for %s", kind)

    # ------------------------------------------------------------ report (caller's thread)

    def _cpu_pressure_pct(self) -> float | None:
        if self._psi_start is None or self._psi_stop is None or self._stopped_monotonic is None:
            return None
        (t0, stall0), (t1, stall1) = self._psi_start, self._psi_stop
        return round(100.0 * (stall1 - stall0) / 1e6 / (t1 - t0), 1) if t1 > t0 else None

    def _probe_report(self, s: _ProbeState) -> ProbeReport:
        assert self._stopped_monotonic is not None and self._started_at is not None
        threshold = self._threshold_ms(s.probe)
        summary = summarise_series(s.series_path, threshold, self._stopped_monotonic, self.config.reorder_slack_s)
        return ProbeReport(
            name=s.probe.name, kind=s.probe.kind, vm=s.probe.vm, target=s.probe.target,
            rate_per_s=s.probe.rate_per_s, series_file=os.path.basename(s.series_path),
            started_at=self._started_at, started_monotonic=s.origin, stopped_monotonic=self._stopped_monotonic,
            window_marks={name: t for t, name in summary.marks},
            sent=summary.sent, ok=summary.ok, failed=summary.failed, windows=summary.windows,
            longest_gap=summary.longest_gap, gap_threshold_ms=threshold, gaps_above_threshold=summary.gaps_above,
            gaps_above_threshold_total=summary.gaps_above_total, failures_by_kind=summary.failures_by_kind,
            in_flight_at_stop=s.in_flight_at_stop, unresolved_at_stop=summary.unresolved_at_stop,
            max_send_lag_ms=round(summary.max_send_lag_ms, 3), reconciliation=s.reconciliation,
            longest_stall=summary.longest_stall, abandoned=summary.abandoned,
            host_cpu_pressure_pct=self._cpu_pressure_pct(),
        )
