"""Table tests of the `convergence-forecast` pre-flight check: PASS, WARN within 20 % of the budget, FAIL, unknown.

A 1 GiB guest against a 300 s budget; the first round over a 128 MiB/s link takes 8 s (see test_forecast.py).
"""

from __future__ import annotations

import pytest

from livedrill.forecast import DirtyRateReading, ForecastConfig, MigrationLimits, convergence_check
from livedrill.outcomes import CheckStatus

MI = 1024**2
GI = 1024**3
LINK = {"bandwidth_bytes_per_s": 128 * MI}
PLATFORM = MigrationLimits(source="test")


UNSET = DirtyRateReading(source="metrics.kubevirt", unknown="metrics.kubevirt is not set")


def run(config: dict | None, limits: MigrationLimits | None = PLATFORM, budget_s: float = 300.0,
        measured: float | DirtyRateReading | None = None, slo_downtime_ms: float = 500.0):
    reading = DirtyRateReading(bytes_per_s=measured, source="test") if isinstance(measured, float) else measured
    return convergence_check(None if config is None else ForecastConfig(**config), limits, 1 * GI, budget_s,
                             reading, slo_downtime_ms, "vm banking/core")


@pytest.mark.parametrize("config, limits, budget_s, measured, status, words", [
    (None, PLATFORM, 300.0, None, CheckStatus.NOT_APPLICABLE, "no forecast section"),
    # Unknown inputs: a warning naming what is missing, never a guessed figure.
    (LINK, PLATFORM, 300.0, None, CheckStatus.WARN, "unknown: the dirty rate (forecast.dirty_rate_bytes_per_s is not set)"),
    ({**LINK, "dirty_rate_bytes_per_s": "measure"}, PLATFORM, 300.0, None, CheckStatus.WARN,
     "unknown: the dirty rate (could not measure it: nothing measured it)"),
    # The meter's reason is the message's: what the operator must fix.
    ({**LINK, "dirty_rate_bytes_per_s": "measure"}, PLATFORM, 300.0, UNSET, CheckStatus.WARN,
     "unknown: the dirty rate (could not measure it: metrics.kubevirt is not set)"),
    ({"dirty_rate_bytes_per_s": 0}, PLATFORM, 300.0, None, CheckStatus.WARN, "unknown: the bandwidth"),
    ({"dirty_rate_bytes_per_s": 0, **LINK}, None, 300.0, None, CheckStatus.WARN, "no migration settings"),
    # 8 s of 300 s: plenty of margin.
    ({"dirty_rate_bytes_per_s": 0, **LINK}, PLATFORM, 300.0, None, CheckStatus.PASS, "converges after 1 round(s) in 8.0 s"),
    ({**LINK, "dirty_rate_bytes_per_s": "measure"}, PLATFORM, 300.0, 0.0, CheckStatus.PASS, "in 8.0 s"),
    # 8 s of a 9.5 s budget leaves 16 %: within the 20 % margin.
    ({"dirty_rate_bytes_per_s": 0, **LINK}, PLATFORM, 9.5, None, CheckStatus.WARN, "16% of the 9.5 s budget left"),
    # 8 s of 10 s leaves exactly 20 %: not a warning.
    ({"dirty_rate_bytes_per_s": 0, **LINK}, PLATFORM, 10.0, None, CheckStatus.PASS, "20% of the 10 s budget left"),
    # The link, or a budget shorter than the first round: refused before anything moves.
    ({"dirty_rate_bytes_per_s": 128 * MI, **LINK}, PLATFORM, 300.0, None, CheckStatus.FAIL, "the remainder never shrinks"),
    ({"dirty_rate_bytes_per_s": 0, **LINK}, PLATFORM, 7.0, None, CheckStatus.FAIL, "after the drill's 7 s budget"),
    # No link figure in the spec: the platform's cap is the bandwidth (64 MiB/s: 16 s).
    ({"dirty_rate_bytes_per_s": 0}, PLATFORM.model_copy(update={"bandwidth_bytes_per_s": 64 * MI}), 300.0, None,
     CheckStatus.PASS, "in 16.0 s"),
    # Both: the lower wins.
    ({"dirty_rate_bytes_per_s": 0, **LINK}, PLATFORM.model_copy(update={"bandwidth_bytes_per_s": 64 * MI}), 300.0, None,
     CheckStatus.PASS, "in 16.0 s"),
    # The platform throttles with auto-converge: the guest at the link's rate finishes in 44.7 s.
    ({"dirty_rate_bytes_per_s": 128 * MI, **LINK}, PLATFORM.model_copy(update={"auto_converge": True}), 300.0, None,
     CheckStatus.PASS, "auto-converge converges after 10 round(s) in 44.7 s"),
    # Post-copy allowed: it would finish (16 s), but only with its risk: a warning.
    ({"dirty_rate_bytes_per_s": 256 * MI, **LINK}, PLATFORM.model_copy(update={"post_copy": True}), 300.0, None,
     CheckStatus.WARN, "only post-copy would finish, in 16.0 s"),
    # ... never for a core VM on KubeVirt.
    ({"dirty_rate_bytes_per_s": 256 * MI, **LINK},
     PLATFORM.model_copy(update={"post_copy": True, "post_copy_fails_vm": True}), 300.0, None,
     CheckStatus.FAIL, "post-copy refused: a post-copy failure fails the VMI on KubeVirt"),
    # The platform's allowed pause wins over the spec's (50 ms: 6.4 MiB fits, not 16 MiB dirtied in round 2).
    ({"dirty_rate_bytes_per_s": 16 * MI, **LINK, "allowed_downtime_ms": 300},
     PLATFORM.model_copy(update={"max_downtime_ms": 50}), 300.0, None, CheckStatus.PASS, "3 round(s)"),
    ({"dirty_rate_bytes_per_s": 16 * MI, **LINK, "allowed_downtime_ms": 300}, PLATFORM, 300.0, None,
     CheckStatus.PASS, "2 round(s)"),
])
def test_convergence_check(config, limits, budget_s, measured, status, words):
    check = run(config, limits, budget_s, measured)
    assert check.name == "convergence-forecast"
    assert check.status is status, check.message
    assert words in check.message


def test_a_refusal_carries_its_figures_and_what_would_help():
    check = run({"dirty_rate_bytes_per_s": 128 * MI, **LINK})
    assert check.status is CheckStatus.FAIL
    assert "1.00 GiB at 128.0 MiB/s dirtied, 128.0 MiB/s link, 300 ms allowed pause" in check.message
    assert "auto-converge would finish in 44.7 s" in check.remedy
    assert check.evidence["expected"]["ending"] == "no-progress"
    assert check.evidence["inputs"]["memory_bytes"] == GI
    assert check.evidence["auto_converge"]["rounds"] == 10


def test_a_pass_records_the_predicted_time_pause_and_data():
    check = run({"dirty_rate_bytes_per_s": 16 * MI, **LINK})
    expected = check.evidence["expected"]
    assert (expected["rounds"], expected["migration_s"], expected["switchover_pause_ms"]) == (2, 9.125, 125.0)
    assert expected["sent_bytes"] == (1024 + 128 + 16) * MI
    assert expected["margin_s"] == pytest.approx(300 - 9.125)


@pytest.mark.parametrize("slo_downtime_ms, status", [(125.0, CheckStatus.PASS), (100.0, CheckStatus.WARN)])
def test_a_predicted_pause_beyond_the_slo_warns(slo_downtime_ms, status):
    """16 MiB/s: the switchover sends 16 MiB in 125 ms, the least outage the probes can observe."""
    check = run({"dirty_rate_bytes_per_s": 16 * MI, **LINK}, slo_downtime_ms=slo_downtime_ms)
    assert check.status is status
    assert ("the pause alone exceeds slo.max_downtime_ms 100" in check.message) is (status is CheckStatus.WARN)


def test_the_reading_is_in_the_evidence_whether_measured_or_not():
    measured = DirtyRateReading(bytes_per_s=0.0, source="http://prom:9090: max(...)")
    passed = run({**LINK, "dirty_rate_bytes_per_s": "measure"}, measured=measured)
    assert passed.status is CheckStatus.PASS
    assert passed.evidence["dirty_rate_reading"] == measured.model_dump(mode="json")
    assert passed.evidence["inputs"]["dirty_rate_bytes_per_s"] == 0.0
    unknown = run({**LINK, "dirty_rate_bytes_per_s": "measure"}, measured=UNSET)
    assert unknown.evidence["dirty_rate_reading"]["unknown"] == "metrics.kubevirt is not set"
    # A declared figure is the spec's: a reading (there is none) is not recorded.
    assert "dirty_rate_reading" not in run({**LINK, "dirty_rate_bytes_per_s": 0}).evidence


@pytest.mark.parametrize("touched_config, measured_touched, words, seconds", [
    # Measured: 256 MiB of the 1 GiB hold data, the first round sends those (2 s), the figure in the message.
    ("measure", 256.0 * MI, "256 MiB of memory holding data", 2.0),
    # Asked for but not measured (the platform has no sampler, or it failed): all memory counts, and it says so.
    ("measure", None, "all memory counted (touched memory not measured)", 8.0),
    # Declared in the spec.
    (512 * MI, None, "512 MiB of memory holding data", 4.0),
    # Not asked for: all memory, nothing said.
    (None, None, "128.0 MiB/s link, 300 ms allowed pause)", 8.0),
])
def test_touched_memory_sets_the_first_round(touched_config, measured_touched, words, seconds):
    config = ForecastConfig(dirty_rate_bytes_per_s=0, touched_memory_bytes=touched_config, **LINK)
    check = convergence_check(config, PLATFORM, 1 * GI, 300.0, None, 500.0, "vm banking/core",
                              measured_touched_bytes=measured_touched)
    assert check.status is CheckStatus.PASS and words in check.message, check.message
    assert check.evidence["expected"]["migration_s"] == pytest.approx(seconds)


def r(mib: float | None, why: str | None = None) -> DirtyRateReading:
    return DirtyRateReading(bytes_per_s=None if mib is None else mib * MI, source="QEMU on host-a", unknown=why)


@pytest.mark.parametrize("readings, mib, unknown, source", [
    ([r(25), r(31), r(28)], 31, None, "the highest of 3 windows (25, 31, 28 MiB/s) of QEMU on host-a"),
    ([r(None, "timed out"), r(12)], 12, None, "the highest of 2 windows (-, 12 MiB/s) of QEMU on host-a"),
    ([r(7)], 7, None, "QEMU on host-a"),  # one window: its own reading
    ([r(None, "timed out"), r(None, "domain gone")], None, "domain gone", "QEMU on host-a"),  # the last reason
    ([], None, "nothing measured it", "no meter"),
])
def test_the_busiest_window_is_the_forecasts_rate(readings, mib, unknown, source):
    from livedrill.forecast import busiest_reading

    got = busiest_reading(readings)
    assert (got.bytes_per_s, got.unknown, got.source) == (None if mib is None else mib * MI, unknown, source)


def test_the_post_check_reads_back_a_measured_forecast_from_the_preflight_record():
    """The check's evidence carries the dirty-rate reading beside the forecast; the post-check reads the forecast."""
    from livedrill.outcomes import PreflightResult
    from livedrill.spec import VMRef
    from livedrill.stages.postcheck import recorded_forecast

    check = run({**LINK, "dirty_rate_bytes_per_s": "measure"}, measured=8.0 * MI)
    assert check.evidence["dirty_rate_reading"]["bytes_per_s"] == 8 * MI
    stored = PreflightResult.model_validate_json(PreflightResult(checks=[check]).model_dump_json())
    forecast = recorded_forecast(stored, VMRef.parse("banking/core"))
    assert forecast is not None and forecast.inputs.dirty_rate_bytes_per_s == 8 * MI
    assert forecast.expected.migration_s == check.evidence["expected"]["migration_s"]
