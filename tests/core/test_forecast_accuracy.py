"""The pre-flight's forecast beside what the platform measured of the migration (pure), and each platform's
reading of its own figures."""

from __future__ import annotations

import pytest

from livedrill.forecast import ACCURACY_CHECK, MigrationFigures, MigrationLimits, accuracy_check, forecast, relative_error
from livedrill.outcomes import CheckStatus
from livedrill.platforms.kubevirt.postchecks import kubevirt_migration_figures
from livedrill.platforms.libvirt.checks import libvirt_migration_figures
from tests.core.test_forecast import MI, inputs

# 1 GiB, quiet guest, 128 MiB/s: one round of 8 s, then a switchover of what is left (nothing).
QUIET = forecast(inputs(), MigrationLimits(source="test"))
NEVER = forecast(inputs(dirty_rate_bytes_per_s=128 * MI), MigrationLimits(source="test"))  # dirties as fast as it is sent


@pytest.mark.parametrize("predicted, actual, error", [
    (10.0, 10.0, 0.0), (10.0, 12.5, 0.25), (10.0, 7.0, -0.3), (None, 5.0, None), (10.0, None, None), (0.0, 1.0, None)])
def test_relative_error(predicted, actual, error):
    assert relative_error(predicted, actual) == (pytest.approx(error) if error is not None else None)


@pytest.mark.parametrize("factor, status, words", [
    (1.0, CheckStatus.PASS, "+0% (within ±25%"),
    (1.25, CheckStatus.PASS, "+25% (within ±25%"),
    (0.75, CheckStatus.PASS, "-25% (within ±25%"),
    (1.3, CheckStatus.WARN, "+30% (outside ±25%"),
    (0.5, CheckStatus.WARN, "-50% (outside ±25%"),
])
def test_migration_time_within_a_quarter_of_the_forecast_passes_else_warns(factor, status, words):
    predicted = QUIET.expected.migration_s
    figures = MigrationFigures(migration_s=predicted * factor, switchover_pause_ms=40, data_bytes=1100 * MI,
                               memory_rounds=2, source="test")
    check = accuracy_check(QUIET, figures, "vm banking/core")
    assert (check.name, check.status, check.subject) == (ACCURACY_CHECK, status, "vm banking/core")
    assert words in check.message and f"finished in {predicted * factor:.1f} s" in check.message
    assert "40 ms pause" in check.message and "1100 MiB sent" in check.message and "2 memory pass(es)" in check.message
    assert check.evidence["error"]["migration_s"] == pytest.approx(factor - 1)
    assert check.evidence["forecast"]["migration_s"] == predicted
    assert (check.remedy is None) == (status is CheckStatus.PASS)


def test_figures_the_platform_does_not_report_are_left_out_not_invented():
    check = accuracy_check(QUIET, MigrationFigures(migration_s=8.0, source="VMI timestamps"), "vm a/b")
    assert check.evidence["actual"]["switchover_pause_ms"] is None and check.evidence["error"]["data_bytes"] is None
    assert "pause" not in check.message.split(";")[0] and "VMI timestamps" in check.message


def test_a_migration_forecast_not_to_converge_that_finished_is_a_warning_naming_the_forecast():
    assert NEVER.expected.migration_s is None
    check = accuracy_check(NEVER, MigrationFigures(migration_s=30.0, source="test"), "vm a/b")
    assert check.status is CheckStatus.WARN and "forecast said it would not converge" in check.message
    assert "finished in 30.0 s" in check.message and check.evidence["error"]["migration_s"] is None


@pytest.mark.parametrize("state, seconds", [
    ({"completed": True, "startTimestamp": "2026-12-03T10:00:00Z", "endTimestamp": "2026-12-03T10:00:04.5Z"}, 4.5),
    ({"completed": True, "startTimestamp": "2026-12-03T10:00:00Z"}, None),  # still no end
    ({"completed": False, "startTimestamp": "2026-12-03T10:00:00Z", "endTimestamp": "2026-12-03T10:00:04Z"}, None),
    ({}, None),
])
def test_kubevirt_reads_the_migration_time_off_the_vmi(state, seconds):
    figures = kubevirt_migration_figures({"status": {"migrationState": state}})
    assert (figures.migration_s if figures else None) == seconds
    assert figures is None or figures.switchover_pause_ms is None  # KubeVirt's VMI records no pause


@pytest.mark.parametrize("stats, last_running, expected", [
    ({"time_elapsed": 4200, "downtime": 35, "data_processed": 1_100_000_000, "memory_iteration": 3}, {},
     (4.2, 35, 1_100_000_000, 3)),
    ({"time_elapsed": 900}, {}, (0.9, None, None, None)),
    ({}, {"disk_processed": 5}, None),  # nothing completed on the destination (post-copy keeps none)
    # copy-storage: the destination counts memory only; the disk's bytes are the source's last running figure
    ({"time_elapsed": 6600, "downtime": 35, "data_processed": 73_000_000, "memory_iteration": 3},
     {"disk_total": 134_479_872, "disk_processed": 134_479_872}, (6.6, 35, 207_479_872, 3)),
    ({"time_elapsed": 900, "data_processed": 10}, {"disk_processed": 0}, (0.9, None, 10, None)),  # shared storage
])
def test_libvirt_reads_its_completed_job_statistics(stats, last_running, expected):
    figures = libvirt_migration_figures(stats, last_running)
    got = (figures.migration_s, figures.switchover_pause_ms, figures.data_bytes, figures.memory_rounds) if figures else None
    assert got == expected
