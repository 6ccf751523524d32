"""The `switchover` part of benchmarks/probe_fidelity.py: outages of a real network path, measured by the probe.

The path is tests/probe/switchover_path.py's (needs root): the probe in this namespace, a bridge in a switch
namespace, the lab ledger in the VM's namespace. Kinds: a port cut at the bridge (frames lost both ways, as
at a live migration's switchover), one-way drops either way (nftables), resets from the old host, a
freeze (SIGSTOP), and a MAC move (the bridge still forwards to the VM's old port until the VM announces itself
from its new one with a RARP frame, as QEMU does after a migration). Each outage's start and end are bracketed by the controller's answer (well under 1 ms).

Per outage it prints the truth, the outage the probe measured (the longest gap between successes over it),
its error, where the gap began and ended against the outage (start and end offsets), the first answer after
it (the write's round trip of the probe that ended the gap), and the longest stall of the run (a request in
flight waiting, TCP retransmissions included). The bound, per edge: the gap starts no more than
max(2 ms, one period) plus a round trip before the outage began (the probe sent after the last success needs
its round trip to be answered; sent less than that before the outage, it is caught in it), and ends no later
than max(2 ms, one period) plus the first answer after it ended, each give or take the truth's own
uncertainty (printed as ±).

`--gateway` adds the port cut seen through a real haproxy (HTTP mode, keep-alive to the client and to the
ledger, `http-reuse always`), the way a bank's API gateway sits between the probe and the VM. The gateway
acknowledges the probe's bytes itself and keeps its own backend connections, which wait for TCP's
retransmission like any client's: the probe can only measure the outage the gateway lets through.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.probe.switchover_path, beside the product

from livedrill.probe.engine import ProbeSession  # noqa: E402
from livedrill.probe.series import ProbeRecord, iter_series  # noqa: E402
from livedrill.spec import SLO, TransactionProbe  # noqa: E402
from tests.probe.switchover_path import KINDS, SwitchoverPath  # noqa: E402

LENGTHS_MS = [10, 50, 150, 700, 2000]
RATES = [200.0, 1000.0]
SPACING_S = 2.5
NO_ABORT = SLO(max_downtime_ms=60_000, p99_latency_ms=60_000, max_failed_requests=10**9, max_failure_streak=None)
HAPROXY_READY_S = 10.0


def transaction_probe(base: str, rate: float) -> TransactionProbe:
    return TransactionProbe.model_validate({
        "kind": "transaction", "name": f"tx-{rate:g}", "vm": "lab/ledger", "rate_per_s": rate, "timeout_ms": 10_000,
        "max_in_flight": 8192,
        "write": {"method": "POST", "url": f"{base}/transfers",
                  "json": {"id": "{txid}", "from": "a", "to": "b", "amount": 1}, "expect_status": [201]},
        "read": {"url": f"{base}/transfers/{{txid}}", "expect_json": {"id": "{txid}", "postings": 1}},
    })


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_haproxy(work: Path, backend: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = work / "haproxy.cfg"
    config.write_text(
        "global\n  maxconn 4000\n"
        "defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  timeout client 30s\n"
        "  timeout server 30s\n  http-reuse always\n"
        f"frontend gateway\n  bind 127.0.0.1:{port}\n  default_backend vm\n"
        f"backend vm\n  server ledger {backend}\n")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + HAPROXY_READY_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("haproxy did not start")


def measure(work: Path, kind: str, rate: float, gateway: bool) -> list[dict]:
    rows = []
    with SwitchoverPath(work / f"{kind}-{rate:g}-{gateway}") as path:
        haproxy = None
        base = path.base_url
        if gateway:
            haproxy, base = start_haproxy(work, f"{path.vm_addr}:8080")
        try:
            series = work / f"series-{kind}-{rate:g}-{gateway}"
            # gaps listed: above two periods, so that the ones over each outage are not crowded out by steady ones
            session = ProbeSession([transaction_probe(base, rate)], NO_ABORT, series,
                                   gap_threshold_ms=max(3.0, 2 * 1000.0 / rate))
            session.start()
            time.sleep(1.0)
            outages = []
            for length in LENGTHS_MS:
                outages.append(path.outage(kind, length / 1000.0))
                time.sleep(SPACING_S)
            report = session.stop()
        finally:
            if haproxy is not None:
                haproxy.kill()
                haproxy.wait(timeout=10)
    probe = report.probes[0]
    records = [r for r in iter_series(series / probe.series_file) if isinstance(r, ProbeRecord) and r.t_ack is not None]
    by_ack = {round(r.t_ack, 6): r for r in records}
    period_ms = 1000.0 / rate
    allowed_ms = max(2.0, period_ms)
    for outage in outages:
        began, ended = sum(outage.started) / 2, sum(outage.ended) / 2
        gaps = [g for g in probe.gaps_above_threshold if g.start_monotonic < ended and g.end_monotonic > began]
        gap = max(gaps, key=lambda g: g.duration_ms) if gaps else None
        row = {"rate": rate, "kind": kind + (" via haproxy" if gateway else ""), "truth": outage.truth_ms,
               "uncertainty": outage.uncertainty_ms, "gap": gap}
        if gap is not None:
            closer = by_ack.get(round(gap.end_monotonic, 6))
            opener = by_ack.get(round(gap.start_monotonic, 6))
            round_trip = (opener.t_ack - opener.t_start) * 1000.0 if opener else 0.0
            # from when it could first be answered (sent, or the outage over if it was sent into it) to its answer
            first_answer = (closer.t_ack - max(closer.t_start, ended)) * 1000.0 if closer else float("nan")
            start_off, end_off = (gap.start_monotonic - began) * 1000.0, (gap.end_monotonic - ended) * 1000.0
            slack = outage.uncertainty_ms  # the truth itself is known to within its brackets
            row |= {"outage": gap.duration_ms, "start": start_off, "end": end_off, "first": first_answer,
                    "within": start_off >= -allowed_ms - slack - round_trip
                    and end_off <= allowed_ms + slack + (first_answer if closer else 0.0)}
        rows.append(row)
    stall = probe.longest_stall.duration_ms if probe.longest_stall else float("nan")
    for row in rows:
        row |= {"stall": stall, "abandoned": probe.abandoned, "failed": probe.failed}
    return rows


def switchover_part(rates: list[float] = RATES, gateway: bool = True) -> bool:
    """Prints the table; True when every directly measured outage met the bound."""
    if not all(shutil.which(tool) for tool in ("ip", "nft", "bridge")):
        print("\nPart 4: switchover skipped: needs root, iproute2 and nftables")
        return True
    print(f"\nPart 4: switchover: outages of a real network path (bridge port cut, one-way drops, resets, freeze, MAC move), "
          f"lengths {LENGTHS_MS} ms, {SPACING_S:g} s apart, transaction probes against the lab ledger in a namespace")
    print("  bound per edge: gap start >= outage start - max(2 ms, period) - a round trip; gap end <= outage end + max(2 ms, period)"
          " + first answer; stall = the run's longest wait of a request in flight (TCP retransmissions included)")
    print(f"  {'rate':>5} {'kind':<22} {'truth ms':>9} {'±':>5} {'outage ms':>9} {'error':>7} {'start':>7} {'end':>7}"
          f" {'1st ans':>7} {'within':>6} {'stall ms':>8} {'abandoned':>9} {'failed':>6}")
    met = True
    with tempfile.TemporaryDirectory(prefix="livedrill-switchover-") as tmp:
        plan = [(kind, rate, False) for rate in rates for kind in KINDS]
        if gateway and shutil.which("haproxy"):
            plan += [("port-cut", rate, True) for rate in rates]
        for kind, rate, via_gateway in plan:
            for row in measure(Path(tmp), kind, rate, via_gateway):
                if row["gap"] is None:
                    print(f"  {row['rate']:>5g} {row['kind']:<22} {row['truth']:9.2f} {row['uncertainty']:5.2f}  no gap found")
                    met = met and via_gateway
                    continue
                if not via_gateway:
                    met = met and row["within"]
                print(f"  {row['rate']:>5g} {row['kind']:<22} {row['truth']:9.2f} {row['uncertainty']:5.2f} {row['outage']:9.2f}"
                      f" {row['outage'] - row['truth']:+7.2f} {row['start']:+7.2f} {row['end']:+7.2f} {row['first']:7.2f}"
                      f" {'n/a' if via_gateway else ('yes' if row['within'] else 'NO'):>6} {row['stall']:8.1f}"
                      f" {row['abandoned']:9d} {row['failed']:6d}")
    print(f"  every direct outage within its bound: {'yes' if met else 'NO'} (through the gateway: what it lets through,"
          " not judged)")
    return met
