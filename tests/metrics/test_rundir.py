"""The pure part of the exporter: run records -> samples, with each sample stamped when it was measured."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from livedrill.errors import InputError
from livedrill.evidence.keys import Signer
from livedrill.metrics.rundir import load_run_dir, migrations_from_timeline, quarter_of, samples_from_run_dir
from livedrill.outcomes import TimelineEvent
from livedrill.spec import VMRef
from tests.metrics.sample_runs import QUARTERLY, VM, write_sample_run

UTC = timezone.utc
T0 = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)


def ev(seconds: float, source: str, kind: str, /, **detail) -> TimelineEvent:
    return TimelineEvent(at=T0 + timedelta(seconds=seconds), monotonic=100 + seconds, source=source, kind=kind, detail=detail)


@pytest.mark.parametrize("when, quarter", [
    (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "2026-Q1"),
    (datetime(2026, 3, 31, 23, 59, tzinfo=UTC), "2026-Q1"),
    (datetime(2026, 4, 1, tzinfo=UTC), "2026-Q2"),
    (datetime(2026, 9, 30, 12, tzinfo=UTC), "2026-Q3"),
    (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "2026-Q4"),
    # Quarters are UTC: 1 April 02:00 in Beijing is still 31 March in UTC.
    (datetime(2026, 4, 1, 2, 0, tzinfo=timezone(timedelta(hours=8))), "2026-Q1"),
])
def test_quarter_of(when, quarter):
    assert quarter_of(when) == quarter


CREATED = ev(0, "livedrill", "migration-created", migration="m1", source="node-1", target=None)
NS_A = VMRef.parse("ns/a")
DRAIN_VMS = [VMRef.parse(v) for v in ("ns/a", "ns/b", "other/b")]
CASES = {
    "no migration": ([ev(0, "livedrill", "run-created")], [], []),
    "phases before any migration are ignored": ([ev(0, "platform", "phase", phase="Running")], ["ns/a"], []),
    "drain: interleaved evacuations keyed by migration, VMI found among the drill's VMs": (
        [ev(0, "livedrill", "cordoned", node="node-1"),
         ev(1, "platform", "phase", migration="kubevirt-evacuation-x", vmi="a", phase="Pending"),
         ev(2, "platform", "phase", migration="kubevirt-evacuation-y", vmi="c", phase="Pending"),
         ev(3, "platform", "phase", migration="kubevirt-evacuation-x", vmi="a", phase="Running"),
         ev(4, "platform", "phase", migration="kubevirt-evacuation-y", vmi="c", phase="Succeeded"),
         ev(6, "platform", "phase", migration="kubevirt-evacuation-x", vmi="a", phase="Succeeded")],
        [],
        [("ns/a", "node-1", None, [("Pending", 1, 3), ("Running", 3, 6), ("Succeeded", 6, None)], False),
         ("c", "node-1", None, [("Pending", 2, 4), ("Succeeded", 4, None)], False)]),
    "drain: a VMI name in two namespaces stays ambiguous": (
        [ev(1, "platform", "phase", migration="e1", vmi="b", phase="Pending")], [],
        [("b", None, None, [("Pending", 1, None)], False)]),
    "one migration, repeated phase collapsed, target learned from phases": (
        [CREATED, ev(1, "platform", "phase", phase="Pending", target=None),
         ev(2, "platform", "phase", phase="Pending"), ev(3, "platform", "phase", phase="Running", target="node-2"),
         ev(9, "platform", "phase", phase="Succeeded", target="node-2")],
        ["ns/a"],
        [("ns/a", "node-1", "node-2", [("Pending", 1, 3), ("Running", 3, 9), ("Succeeded", 9, None)], False)]),
    "two VMs in drill order, an explicit vm detail wins": (
        [CREATED, ev(1, "platform", "phase", phase="Failed"), ev(0.5, "livedrill", "cancel-requested"),
         ev(10, "livedrill", "migration-created", migration="m2", source="node-1", vm="ns/explicit"),
         ev(11, "platform", "phase", phase="Succeeded")],
        ["ns/a", "ns/b"],
        [("ns/a", "node-1", None, [("Failed", 1, None)], True),
         ("ns/explicit", "node-1", None, [("Succeeded", 11, None)], False)]),
    "more migrations than started VMs": (
        [CREATED, ev(1, "livedrill", "migration-created", migration="m2")], [], [("unknown", "node-1", None, [], False),
                                                                               ("unknown", None, None, [], False)]),
}


@pytest.mark.parametrize("events, vms_started, expected", CASES.values(), ids=CASES.keys())
def test_migrations_from_timeline(events, vms_started, expected):
    got = migrations_from_timeline(events, DRAIN_VMS, vms_started)
    assert [(m.vm, m.source, m.target,
             [(p.phase, (p.entered_at - T0).total_seconds(), None if p.left_at is None else (p.left_at - T0).total_seconds())
              for p in m.phases], m.cancelled) for m in got] == expected


def test_succeeded_needs_the_terminal_phase_and_no_cancel():
    ok = migrations_from_timeline([CREATED, ev(1, "platform", "phase", phase="Succeeded")], [NS_A], ["ns/a"])[0]
    cancelled = migrations_from_timeline([CREATED, ev(0.5, "livedrill", "cancel-requested"),
                                          ev(1, "platform", "phase", phase="Succeeded")], [NS_A], ["ns/a"])[0]
    running = migrations_from_timeline([CREATED, ev(1, "platform", "phase", phase="Running")], [NS_A], ["ns/a"])[0]
    assert (ok.succeeded, cancelled.succeeded, running.succeeded) == (True, False, False)
    assert running.terminal is None


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    return write_sample_run(tmp_path_factory.mktemp("archive"), QUARTERLY[2], Signer.generate())


def _one(samples, name, **labels):
    found = [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_samples_of_a_cancelled_failed_drill(sample_run):
    """The Q3 sample drill: cancelled on a probe breach; each figure and its timestamp as the drill measured it."""
    d = QUARTERLY[2]
    samples = samples_from_run_dir(sample_run)
    ms = lambda t: round(t.timestamp() * 1000)  # noqa: E731
    created = d.created_at
    result = _one(samples, "livedrill_drill_result")
    assert (result.value, result.timestamp_ms) == (0.0, ms(d.ended_at))
    assert result.labels == {"cluster": "prod-core-a", "drill": "banking-core-quarterly", "run_id": sample_run.name,
                             "mode": "targeted", "platform": "kubevirt", "outcome": "FAILED", "quarter": "2026-Q3"}
    assert _one(samples, "livedrill_drill_observed_downtime_seconds").value == 0.35
    assert _one(samples, "livedrill_slo_max_downtime_seconds").value == 0.1
    assert _one(samples, "livedrill_rollback_actions", state="done").value == 1
    migration = _one(samples, "livedrill_migration_succeeded")
    assert (migration.value, migration.labels["vm"], migration.labels["node"], migration.labels["target_node"]) == (0.0, VM, "node-3", "node-1")
    assert migration.timestamp_ms == ms(created + timedelta(seconds=11.0))
    running = _one(samples, "livedrill_migration_phase_duration_seconds", phase="Running")
    assert running.value == pytest.approx(6.6) and running.timestamp_ms == ms(created + timedelta(seconds=11.0))
    assert not [s for s in samples if s.name == "livedrill_migration_phase_duration_seconds" and s.labels["phase"] == "Failed"]
    gaps = sorted((s.timestamp_ms, s.value) for s in samples if s.name == "livedrill_probe_gap_seconds")
    assert gaps == [(ms(created + timedelta(seconds=8.0)), 0.04), (ms(created + timedelta(seconds=10.9)), 0.35)]
    baseline_p99 = _one(samples, "livedrill_probe_latency_quantile_seconds", window="baseline", quantile="0.99")
    assert baseline_p99.value == pytest.approx(0.0029) and baseline_p99.timestamp_ms == ms(created)  # the window ends when "during" starts
    assert _one(samples, "livedrill_probe_failures", kind="connect").value == 10
    assert _one(samples, "livedrill_transactions_failed").value == 30
    assert _one(samples, "livedrill_probe_requests", window="during", result="failed").value == 30
    assert _one(samples, "livedrill_probe_latency_quantile_seconds", window="during", quantile="0.5").labels["node"] == "node-3"
    # The histogram comes from the series file: baseline probes cycle 0.9, 1.1, 1.4, 2.1, 4.0 ms.
    assert _one(samples, "livedrill_probe_latency_seconds_bucket", window="baseline", le="0.002").value == 600
    assert _one(samples, "livedrill_probe_latency_seconds_bucket", window="baseline", le="+Inf").value == 1000
    assert _one(samples, "livedrill_probe_latency_seconds_count", window="during").value == 1300  # 30 failures not counted
    assert _one(samples, "livedrill_probe_latency_seconds_sum", window="baseline").value == pytest.approx(1.9, rel=1e-6)
    assert _one(samples, "livedrill_probe_latency_seconds_bucket", window="after", le="0.001").timestamp_ms == \
        _one(samples, "livedrill_probe_latency_quantile_seconds", window="after", quantile="0.5").timestamp_ms


def test_samples_are_deterministic_and_time_ordered(sample_run):
    first, second = samples_from_run_dir(sample_run), samples_from_run_dir(sample_run)
    assert first == second
    assert [s.timestamp_ms for s in first] == sorted(s.timestamp_ms for s in first)
    keys = [(s.series_key(), s.timestamp_ms) for s in first]
    assert len(keys) == len(set(keys)), "one value per series and instant"


def test_a_run_without_its_verdict_is_refused(tmp_path, sample_run):
    (tmp_path / "run.json").write_bytes((sample_run / "run.json").read_bytes())
    with pytest.raises(InputError, match="verdict.json is missing"):
        load_run_dir(tmp_path)
    (tmp_path / "verdict.json").write_text('{"outcome": "MAYBE"}')
    with pytest.raises(InputError, match="not a livedrill record"):
        load_run_dir(tmp_path)
