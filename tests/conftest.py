"""Suite-wide setup: Prefect runs against a throw-away home and a temporary local server, offline."""

from __future__ import annotations

import os
import tempfile

# Before anything imports Prefect (it reads its settings at import): own home, no telemetry.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="livedrill-prefect-"))
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# A `livedrill server` a developer left running is not the suite's: commands under test find none (own folder).
os.environ["LIVEDRILL_SERVER_DIR"] = tempfile.mkdtemp(prefix="livedrill-server-")
# The suite's Prefect servers run on SQLite, whose concurrent writers can get an immediate "database is locked"
# (HTTP 500, rolled back): Prefect's client retries it like any other transient error.
os.environ.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the flow tests; the heartbeat thread off so each flow call is cheap."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


@pytest.fixture
def lab(tmp_path):
    """The embedded KubeVirt lab (targeted preset) on ephemeral ports, stopped after the test."""
    from livedrill_lab.manager import running_lab

    with running_lab(tmp_path) as info:
        yield info


# Modules whose assertions are timings or whose labs are CPU-bound, run alone after the parallel part by `make test`
# (`pytest -m serial`): with two test processes on a 2-core machine, the libvirt lab's QEMU guests (software
# emulation) miss their daemon-start budget, and a probe's measured outage or freeze is stretched by the other
# process's load beyond the one-period bound these tests assert.
SERIAL_MODULES = frozenset({
    "tests/libvirt/test_lab_e2e.py",
    "tests/libvirt/test_forecast_lab.py",
    "tests/probe/test_switchover.py",
    "tests/probe/test_pool_blackout.py",
    # A real ledger frozen by SIGSTOP, its gap or freeze asserted in ms (test_engine's abort-signal test measured a
    # frozen ledger's gap under the SLO once, beside another test process).
    "tests/probe/test_engine.py",
    "tests/probe/test_ledger.py",
    "tests/lab/test_migration.py",
    "tests/e2e/test_drill_flow.py",
})


def pytest_collection_modifyitems(config, items):
    root = config.rootpath
    for item in items:
        if item.path.relative_to(root).as_posix() in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)
