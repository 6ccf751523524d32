"""The Pushgateway path end to end: a drill pushed to a real Pushgateway, scraped by a real Prometheus,
and the one-drill dashboard's instant panels read from what Prometheus scraped.

The Pushgateway refuses timestamps and keeps one value per series, so samples carry the scrape time
and only the newest gap survives: the instant panels still show the drill, the gap history does not.
"""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from livedrill.evidence.keys import Signer
from livedrill.metrics.config import MetricsConfig, PushSink
from livedrill.metrics.export import export_run
from tests.metrics import stores
from tests.metrics.dashboard_queries import panel_queries
from tests.metrics.sample_runs import QUARTERLY, write_sample_run
from tests.metrics.test_dashboards import DETAIL_INDEX, TimeRange, check_result, expectations, run_query, variables

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(stores.PUSHGATEWAY is None or stores.PROMETHEUS is None,
                       reason="needs the Debian packages prometheus-pushgateway and prometheus"),
]
SCRAPE_WAIT_S = 30.0


def test_detail_dashboard_on_pushgateway_data(tmp_path):
    run_dir = write_sample_run(tmp_path / "archive", QUARTERLY[DETAIL_INDEX], Signer.generate())
    # A stale group from the previous quarter's run of the same drill is replaced by the PUT.
    previous = write_sample_run(tmp_path / "archive", replace(QUARTERLY[0], drill=QUARTERLY[DETAIL_INDEX].drill), Signer.generate())
    run_ids = ["unused"] * len(QUARTERLY)
    run_ids[DETAIL_INDEX] = run_dir.name
    with stores.pushgateway(tmp_path / "pgw") as gateway, \
            stores.prometheus(tmp_path / "prom", scrape_target=gateway.base_url.removeprefix("http://")) as prom:
        config = MetricsConfig(push=[PushSink(kind="pushgateway", url=gateway.base_url, retry_deadline_s=10)])
        for run in (previous, run_dir):
            report = export_run(run, config)
            assert report.ok, report.sinks
        deadline = time.monotonic() + SCRAPE_WAIT_S
        query = f'livedrill_drill_result{{run_id="{run_dir.name}"}}'
        while time.monotonic() < deadline:
            result = httpx.get(f"{prom.base_url}/api/v1/query", params={"query": query}, timeout=10).json()["data"]["result"]
            if result:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"Prometheus never scraped {query} from the Pushgateway")
        assert result[0]["metric"]["job"] == "livedrill"
        stale = httpx.get(f"{prom.base_url}/api/v1/query", params={"query": f'livedrill_drill_result{{run_id="{previous.name}"}}'},
                          timeout=10).json()["data"]["result"]
        assert stale == [], "the previous run's group should have been replaced"

        now = int(time.time()) + 1  # not before the scrape that was just seen (int() truncates)
        time_range = TimeRange(now - 300, now, 15)
        wanted = expectations(run_ids)
        checked = 0
        for q in panel_queries():
            if q.dashboard != "livedrill-drill-detail" or not q.instant:
                continue
            check_result(prom, run_query(prom, q, variables(run_ids), time_range), wanted[q.key])
            checked += 1
        assert checked >= 14
