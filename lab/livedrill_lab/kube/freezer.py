"""The real freeze: during the modelled stop-and-copy the VMI's workload process is paused (SIGSTOP, then
SIGCONT after the modelled downtime), and the ground truth of every pause is recorded (freezes.json and
GET /lab/v1/freezes)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from livedrill_lab.kube.cluster import Obj
from livedrill_lab.kube.precopy import PrecopyPlan

# How long the freeze waits for the kernel to actually stop the workload after SIGSTOP is queued.
STOP_CONFIRM_TIMEOUT_S = 0.5
SPIN_S = 0.001


class Freezer:
    def __init__(self, workloads: dict[str, int], freezes_file: Path | None):
        self.workloads = workloads  # "ns/name" -> PID paused at stop-and-copy
        self.freezes_file = freezes_file
        self._freezes: list[Obj] = []
        self._frozen_pids: set[int] = set()
        self._lock = threading.Lock()

    def freezes(self) -> list[Obj]:
        with self._lock:
            return [dict(f) for f in self._freezes]

    def thaw_all(self) -> None:
        """Never leave a workload stopped behind (the lab is stopping)."""
        with self._lock:
            for pid in list(self._frozen_pids):
                _signal(pid, signal.SIGCONT)
            self._frozen_pids.clear()

    def freeze(self, vmim: Obj, vmi: Obj, downtime_ms: float, plan: PrecopyPlan) -> Obj:
        """Pause the VMI's workload for the modelled stop-and-copy; returns the recorded freeze.

        Times are time.monotonic() (CLOCK_MONOTONIC: comparable across processes on this host) and wall
        clock. `frozen_ms` is the outer bound, from just before SIGSTOP to just after SIGCONT returned;
        `stopped_ms` the inner bound, from /proc confirming the stop to just before SIGCONT. `signalled`
        is False when the workload process was gone.
        """
        key = f"{vmi['metadata']['namespace']}/{vmi['metadata']['name']}"
        pid = self.workloads.get(key)
        record: Obj = {"vmi": key, "migration": vmim["metadata"]["name"], "migrationUid": vmim["metadata"]["uid"],
                       "pid": pid, "modelled_downtime_ms": downtime_ms, "model_downtime_ms": plan.downtime_ms,
                       "iterations": plan.iterations, "precopy_s": plan.precopy_s}
        if pid is None:
            record["note"] = "no workload process registered for this VMI: nothing paused"
            time.sleep(downtime_ms / 1000.0)
            self._record(record)
            return record
        with self._lock:
            self._frozen_pids.add(pid)
        wall_before_stop, mono_before_stop = time.time(), time.monotonic()
        stopped = _signal(pid, signal.SIGSTOP)
        mono_after_stop = time.monotonic()
        # kill() returns once the signal is queued; the process stops when the kernel next schedules it.
        # The modelled pause runs from the moment /proc confirms it is stopped.
        confirmed = stopped and _wait_until_stopped(pid, STOP_CONFIRM_TIMEOUT_S)
        mono_confirmed = time.monotonic()
        _sleep_until(mono_confirmed + downtime_ms / 1000.0)
        mono_before_cont = time.monotonic()
        _signal(pid, signal.SIGCONT)
        mono_after_cont, wall_after_cont = time.monotonic(), time.time()
        with self._lock:
            self._frozen_pids.discard(pid)
        record.update({
            "signalled": stopped,
            "stop_confirmed": confirmed, "stop_confirmed_monotonic": mono_confirmed,
            "stop_monotonic": mono_before_stop, "stop_returned_monotonic": mono_after_stop,
            "cont_monotonic": mono_before_cont, "cont_returned_monotonic": mono_after_cont,
            "stop_wall": wall_before_stop, "cont_wall": wall_after_cont,
            "stop_utc": _iso(wall_before_stop), "cont_utc": _iso(wall_after_cont),
            "frozen_ms": (mono_after_cont - mono_before_stop) * 1000.0,
            "stopped_ms": (mono_before_cont - mono_confirmed) * 1000.0,
        })
        self._record(record)
        return record

    def _record(self, record: Obj) -> None:
        with self._lock:
            self._freezes.append(record)
            snapshot = list(self._freezes)
        if self.freezes_file:
            tmp = self.freezes_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"freezes": snapshot}, indent=1))
            tmp.replace(self.freezes_file)


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="microseconds")


def _sleep_until(deadline: float) -> None:
    """Sleep to a monotonic deadline; the last stretch is spun, as a sleep may overshoot by a scheduler tick."""
    while (remaining := deadline - time.monotonic()) > SPIN_S:
        time.sleep(remaining - SPIN_S)
    while time.monotonic() < deadline:
        pass


def _wait_until_stopped(pid: int, timeout_s: float) -> bool:
    """Poll /proc/PID/stat until the process state is stopped ("T"), for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in (b"T", b"t"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0001)


def _signal(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
