"""The probe engine against a real ledger process: real HTTP, real SIGSTOP/SIGKILL, real sqlite tampering."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import socket
import sqlite3
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from livedrill.outcomes import CheckStatus
from livedrill.probe.engine import ProbeSession
from livedrill.probe.series import iter_series, ProbeRecord
from livedrill.spec import SLO, HttpProbe, TcpProbe, TransactionProbe

pytestmark = pytest.mark.e2e

GENEROUS = SLO(max_downtime_ms=2000, p99_latency_ms=500, max_failed_requests=0, max_stall_ms=2000)


def tx_probe(base_url: str, rate: float = 200, **extra) -> TransactionProbe:
    return TransactionProbe.model_validate({
        "kind": "transaction", "name": extra.pop("name", "ledger-tx"), "vm": "banking/banking-core-vm", "rate_per_s": rate,
        "write": {"method": "POST", "url": f"{base_url}/transfers",
                  "json": {"id": "{txid}", "from": "acct-1", "to": "acct-2", "amount": 100},
                  "expect_status": [201], "expect_json": {"id": "{txid}", "status": "committed"}},
        "read": {"url": f"{base_url}/transfers/{{txid}}", "expect_json": {"id": "{txid}", "postings": 1}},
        "reconcile": {"count_field": "postings"},
        **extra,
    })


def run(session: ProbeSession, baseline_s: float, during_s: float, after_s: float, during_action=None):
    session.start()
    time.sleep(baseline_s)
    session.mark_window("during")
    truth = during_action() if during_action else None
    time.sleep(during_s)
    session.mark_window("after")
    time.sleep(after_s)
    return session.stop(), truth


def freeze(pid: int, seconds: float) -> tuple[float, float]:
    """SIGSTOP for `seconds`; the ground truth in ms as (outer, inner): outer taken around the two kill calls,
    inner between them (the process was surely stopped all that time). On a loaded machine this thread can be
    descheduled next to a kill call, which widens the outer bound alone."""
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    time.sleep(seconds)
    resuming = time.monotonic()
    os.kill(pid, signal.SIGCONT)
    t1 = time.monotonic()
    return (t1 - t0) * 1000.0, (resuming - stopped) * 1000.0


def test_steady_run_has_no_gap_and_every_write_reconciles(ledger, tmp_path):
    lp = ledger()
    events = []
    session = ProbeSession([tx_probe(lp.url, rate=200)], GENEROUS, tmp_path / "series", on_event=events.append)
    report, live = run(session, 1.0, 0.5, 0.5, during_action=session.live)
    p = report.probes[0]
    assert live[0].name == "ledger-tx" and live[0].ok >= 100 and live[0].failed == 0  # pushed from the probe process
    # the live gap (terminal, warm-up check) is current: successes are released as soon as nothing older is in flight
    assert live[0].last_gap_ms is not None and live[0].last_gap_ms < 500
    assert p.failed == 0 and p.failures_by_kind == {}
    assert p.sent == pytest.approx((p.stopped_monotonic - p.started_monotonic) * 200, abs=2)  # open loop, 200/s
    assert p.ok == p.sent
    assert p.longest_gap.duration_ms < 500  # 5 ms period; other work on this 2-core machine stalls processes ~100 ms
    marks = p.window_marks  # each probe belongs to the window it was scheduled in
    expected = {"baseline": (marks["during"] - marks["baseline"]) * 200, "during": (marks["after"] - marks["during"]) * 200,
                "after": (p.stopped_monotonic - marks["after"]) * 200}
    assert {w: s.count for w, s in p.windows.items()} == pytest.approx(expected, abs=2)
    assert expected["baseline"] >= 195 and expected["during"] >= 95  # the test slept at least 1 s and 0.5 s
    assert p.reconciliation.acknowledged == p.sent == p.reconciliation.verified
    assert p.reconciliation.lost == p.reconciliation.duplicated == p.reconciliation.unverifiable == 0
    checks = {c.name: c.status for c in report.checks(GENEROUS)}
    assert checks.pop("probe.instrument-health") in (CheckStatus.PASS, CheckStatus.WARN)  # depends on the host's load
    assert set(checks.values()) == {CheckStatus.PASS}
    assert p.abandoned == 0 and p.longest_stall is not None and p.longest_stall.outcome == "ok"
    assert p.host_cpu_pressure_pct is None or 0.0 <= p.host_cpu_pressure_pct <= 100.0
    assert not session.abort_event.is_set() and report.breach is None
    assert [e.detail["window"] for e in events if e.kind == "window"] == ["baseline", "during", "after"]
    # the ledger holds exactly what the probe acknowledged
    with sqlite3.connect(lp.db_path) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT txid) FROM postings").fetchone() == (p.sent, p.sent)
    assert (tmp_path / "series" / "ledger-tx.series").stat().st_size > 28 * p.sent


def test_sigstop_gap_matches_ground_truth(ledger, tmp_path):
    lp = ledger()
    rate = 500.0
    events = []
    session = ProbeSession([tx_probe(lp.url, rate=rate)], GENEROUS, tmp_path / "series", on_event=events.append)
    report, (truth_ms, inner_ms) = run(session, 0.5, 0.3, 0.3, during_action=lambda: freeze(lp.proc.pid, 0.3))
    p = report.probes[0]
    gap = p.longest_gap
    period_ms = 1000.0 / rate
    # the gap covers the freeze, and exceeds it by at most one period plus scheduling noise (the ±2 ms figure on a
    # quiet host is benchmarks/probe_fidelity.py's to show; here a shared 2-core CI machine adds its own stalls)
    assert inner_ms - 1.0 <= gap.duration_ms <= truth_ms + period_ms + 30.0, (gap.duration_ms, inner_ms, truth_ms)
    assert "during" in gap.windows and not gap.open  # it may start a hair before the mark
    # every other gap above the threshold (backlog served on resume, other work on the machine) is far shorter
    assert gap in p.gaps_above_threshold
    assert all(g.duration_ms < gap.duration_ms / 2 for g in p.gaps_above_threshold if g != gap)
    assert p.failed == 0  # requests queued in the socket and were served on resume: slow, not lost
    # truth_ms is the outer bound (taken around the kill calls); the frozen request waited at least the inner one
    assert p.windows["during"].max_ms >= inner_ms - period_ms - 10.0
    assert p.reconciliation.verified == p.reconciliation.acknowledged == p.sent
    gap_events = [e for e in events if e.kind == "gap"]
    assert max(e.detail["gap_ms"] for e in gap_events) == pytest.approx(gap.duration_ms, abs=0.01)
    assert len(gap_events) == p.gaps_above_threshold_total
    assert not session.abort_event.is_set()


def test_gap_beyond_slo_raises_abort_signal_while_frozen(ledger, tmp_path):
    lp = ledger()
    slo = SLO(max_downtime_ms=100, p99_latency_ms=500)
    session = ProbeSession([tx_probe(lp.url, rate=200)], slo, tmp_path / "series")
    session.start()
    time.sleep(0.3)
    session.mark_window("during")
    t0 = time.monotonic()
    os.kill(lp.proc.pid, signal.SIGSTOP)
    try:
        assert session.abort_event.wait(timeout=2.0)
        signalled_ms = (time.monotonic() - t0) * 1000.0
    finally:
        os.kill(lp.proc.pid, signal.SIGCONT)
    report = session.stop()
    assert signalled_ms < 1000.0  # fired while still frozen, long before the wait's limit
    # ... once the silence since the last success it knew of passed the limit (watchdog period 5 ms). A transaction
    # counts as served when its write was acknowledged, but is known to have succeeded only when its read-back
    # answers: a write acknowledged just before the freeze, read back after it, starts the gap up to a read-back
    # earlier than the last success the watchdog could know.
    records = [r for r in iter_series(tmp_path / "series" / report.probes[0].series_file) if isinstance(r, ProbeRecord)]
    known = max(r.t_ack or r.t_end for r in records if r.ok and r.t_end <= report.breach_monotonic)
    assert 100.0 < (report.breach_monotonic - known) * 1000.0
    silence_at_signal_ms = (report.breach_monotonic - report.probes[0].longest_gap.start_monotonic) * 1000.0
    assert silence_at_signal_ms < 600.0  # loose: a shared machine deschedules processes; latency is benchmarked
    assert "ledger-tx" in report.breach and "max_downtime_ms 100" in report.breach
    names = {c.name: c.status for c in report.checks(slo)}
    assert names["slo.max-downtime"] is CheckStatus.FAIL and names["probe.abort-signal"] is CheckStatus.FAIL


def test_ledger_killed_mid_run_counts_failures_by_kind_and_aborts(ledger, tmp_path):
    lp = ledger()
    session = ProbeSession([tx_probe(lp.url, rate=200, timeout_ms=500)], GENEROUS, tmp_path / "series")

    def kill():
        lp.proc.kill()
        lp.proc.wait(timeout=5)

    report, _ = run(session, 0.4, 0.6, 0.1, during_action=kill)
    p = report.probes[0]
    assert session.abort_event.is_set()
    assert "error budget" in report.breach or "consecutive" in report.breach
    assert p.failed > 50
    assert set(p.failures_by_kind) <= {"connect", "reset"} and p.failures_by_kind.get("connect", 0) > 50
    assert p.longest_gap.open and "during" in p.longest_gap.windows
    assert p.longest_gap.duration_ms >= 600
    # writes acknowledged before the kill cannot be read back now: unverifiable, so zero loss is not claimed
    assert p.reconciliation.unverifiable == p.reconciliation.acknowledged > 0
    checks = {c.name: c for c in report.checks(GENEROUS)}
    assert checks["slo.failed-requests"].status is CheckStatus.FAIL and "connect" in checks["slo.failed-requests"].message
    assert checks["slo.lost-transactions"].status is CheckStatus.FAIL


def test_reconciliation_finds_a_lost_and_a_duplicated_transaction(ledger, tmp_path):
    lp = ledger()
    session = ProbeSession([tx_probe(lp.url, rate=100)], GENEROUS, tmp_path / "series")
    session.start()
    time.sleep(0.5)
    os.kill(lp.proc.pid, signal.SIGSTOP)
    try:
        lost, dup = f"ld-{session.run_id}-0-3", f"ld-{session.run_id}-0-4"
        with sqlite3.connect(lp.db_path, timeout=5) as db:
            assert db.execute("DELETE FROM postings WHERE txid = ?", (lost,)).rowcount == 1
            db.execute("INSERT INTO postings (txid, src, dst, amount) VALUES (?, 'acct-1', 'acct-2', 100)", (dup,))
    finally:
        os.kill(lp.proc.pid, signal.SIGCONT)
    time.sleep(0.3)
    report = session.stop()
    rec = report.probes[0].reconciliation
    assert rec.lost_ids == [lost] and rec.duplicated_ids == [dup]
    assert rec.verified == rec.acknowledged - 2 and rec.unverifiable == 0
    details = (tmp_path / "series" / rec.details_file).read_text().splitlines()
    assert len(details) == 2
    checks = {c.name: c for c in report.checks(GENEROUS)}
    assert checks["slo.lost-transactions"].status is CheckStatus.FAIL and lost in checks["slo.lost-transactions"].message
    assert checks["slo.duplicated-transactions"].status is CheckStatus.FAIL


def test_open_loop_keeps_sending_while_the_target_stalls(ledger, tmp_path):
    lp = ledger()
    probe = tx_probe(lp.url, rate=200, max_in_flight=5, timeout_ms=3000)
    session = ProbeSession([probe], GENEROUS, tmp_path / "series", isolation="thread")
    session.start()
    time.sleep(0.2)
    freeze(lp.proc.pid, 0.5)
    time.sleep(0.2)
    report = session.stop()
    p = report.probes[0]
    # the stall did not slow the schedule: one send per period from start to stop
    assert p.sent == pytest.approx((p.stopped_monotonic - p.started_monotonic) * 200, abs=2)
    assert p.sent >= 175  # at least the 0.9 s the test slept
    assert p.failures_by_kind.get("in-flight-limit", 0) >= 80  # 5 waiting, the rest refused
    records = [r for r in iter_series(tmp_path / "series" / p.series_file) if isinstance(r, ProbeRecord)]
    assert sorted(r.seq for r in records) == list(range(p.sent))
    # a closed loop would have waited out the 500 ms freeze; scheduling noise on a busy machine is far less
    assert p.max_send_lag_ms < 250


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_and_tcp_probes(ledger, tmp_path):
    lp = ledger()
    health = HttpProbe.model_validate({"kind": "http", "name": "health", "vm": "banking/banking-core-vm", "rate_per_s": 100,
                                       "request": {"url": f"{lp.url}/healthz", "expect_json": {"status": "ok"}}})
    tcp = TcpProbe.model_validate({"kind": "tcp", "name": "tcp", "vm": "banking/banking-core-vm", "rate_per_s": 50,
                                   "host": "127.0.0.1", "port": lp.port,
                                   "send": "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   "expect": '"status":"ok"'})
    dead = TcpProbe.model_validate({"kind": "tcp", "name": "dead", "vm": "banking/banking-core-vm", "rate_per_s": 50,
                                    "host": "127.0.0.1", "port": _closed_port()})
    wrong = HttpProbe.model_validate({"kind": "http", "name": "wrong", "vm": "banking/banking-core-vm", "rate_per_s": 20,
                                      "request": {"url": f"{lp.url}/healthz", "expect_json": {"status": "degraded"}}})
    session = ProbeSession([health, tcp, dead, wrong], GENEROUS, tmp_path / "series", isolation="thread")
    session.start()
    time.sleep(1.0)
    report = session.stop()
    by = {p.name: p for p in report.probes}
    assert by["health"].failed == 0 and by["health"].ok >= 90
    assert by["tcp"].failed == 0 and by["tcp"].ok >= 45
    assert by["dead"].ok == 0 and by["dead"].failures_by_kind == {"connect": by["dead"].sent}
    assert by["wrong"].failures_by_kind == {"body-mismatch": by["wrong"].sent}
    assert by["health"].reconciliation is None
    dead_checks = {c.name: c.status for c in by["dead"].checks(GENEROUS)}
    assert dead_checks["slo.max-downtime"] is CheckStatus.FAIL


# ---------------------------------------------------------------- TLS with a CA bundle and client certificates


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, san_ip: str | None = None):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pem(path, cert=None, key=None):
    data = b""
    if cert is not None:
        data += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(data)
    return path


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livedrill test CA")])
    ca = _cert("livedrill test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("ledger", server_key, ca_name, ca_key, ca=False, san_ip="127.0.0.1")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("probe", client_key, ca_name, ca_key, ca=False)
    return {
        "ca": _write_pem(d / "ca.pem", cert=ca),
        "server_cert": _write_pem(d / "server.pem", cert=server),
        "server_key": _write_pem(d / "server.key", key=server_key),
        "client_cert": _write_pem(d / "client.pem", cert=client),
        "client_key": _write_pem(d / "client.key", key=client_key),
    }


def test_mutual_tls_with_ca_bundle_and_client_certificate(ledger, tmp_path, pki):
    lp = ledger(extra_args=["--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]),
                            "--tls-client-ca", str(pki["ca"])])
    base = f"https://127.0.0.1:{lp.port}"
    good = tx_probe(base, rate=50, name="mtls", tls={"ca_bundle": pki["ca"], "client_cert": pki["client_cert"],
                                                     "client_key": pki["client_key"]})
    no_client_cert = tx_probe(base, rate=20, name="no-client-cert", tls={"ca_bundle": pki["ca"]})
    untrusted = tx_probe(base, rate=20, name="untrusted-server", tls={"client_cert": pki["client_cert"],
                                                                      "client_key": pki["client_key"]})
    session = ProbeSession([good, no_client_cert, untrusted], GENEROUS, tmp_path / "series")
    session.start()
    time.sleep(1.0)
    report = session.stop()
    by = {p.name: p for p in report.probes}
    assert by["mtls"].failed == 0 and by["mtls"].ok >= 45
    assert by["mtls"].reconciliation.verified == by["mtls"].reconciliation.acknowledged == by["mtls"].sent
    assert by["no-client-cert"].ok == 0 and set(by["no-client-cert"].failures_by_kind) <= {"tls", "reset"}
    assert by["untrusted-server"].failures_by_kind == {"tls": by["untrusted-server"].sent}


def test_a_probe_process_that_cannot_start_says_why(tmp_path):
    probe = tx_probe("https://127.0.0.1:9", tls={"ca_bundle": tmp_path / "missing-ca.pem"})
    session = ProbeSession([probe], GENEROUS, tmp_path / "series")
    with pytest.raises(RuntimeError, match="could not start.*(No such file|FileNotFoundError)"):
        session.start()
