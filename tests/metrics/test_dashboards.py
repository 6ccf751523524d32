"""Every PromQL query of every dashboard panel, run against a real Prometheus and a real
VictoriaMetrics (Debian packages) holding the pushed metrics of sample drills.

The drills are written as run directories by the real evidence writer and exported with
`export_run` (remote write to Prometheus, the import API to VictoriaMetrics). KubeVirt cannot run
here, so its series are pushed as virt-controller/virt-handler would have exposed them. Expected
values come from the sample drills' definitions, never from the exporter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from prefect.logging import disable_run_logger

from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.metrics.config import MetricsConfig, PrometheusQuery, PushSink
from livedrill.spec import VMRef
from livedrill.metrics.export import kubevirt_evidence_for_run, export_run
from livedrill.metrics.kubevirt import KubeVirtMetricsEvidence
from livedrill.metrics.push import push_samples
from livedrill.metrics.samples import CATALOGUE, family_of
from livedrill.outcomes import CompensationState, DrillOutcome
from tasks.metrics import export_metrics, kubevirt_metrics_evidence
from tests.metrics import stores
from tests.metrics.dashboard_queries import PanelQuery, dashboards, panel_queries, substitute, variable_queries
from tests.metrics.kubevirt_samples import (
    data_remaining, in_flight, kubevirt_samples, migration_name, p95_in_bucket, transfer_rate, window,
)
from tests.metrics.sample_runs import QUARTERLY, VM, SampleDrill, write_sample_run

pytestmark = pytest.mark.e2e

UTC = timezone.utc
CLUSTER = "prod-core-a"
DRILLS_A = [d for d in QUARTERLY if d.cluster == CLUSTER]
DETAIL = DRILLS_A[1]  # the failed Q2 drill: lost transactions, failures, a rollback action
DETAIL_INDEX = QUARTERLY.index(DETAIL)

STORES = {
    "prometheus": (stores.PROMETHEUS, stores.prometheus, "remote_write", "/api/v1/write", "prometheus"),
    "victoriametrics": (stores.VICTORIA_METRICS, stores.victoria_metrics, "victoriametrics_import",
                        "/api/v1/import/prometheus", "victoria-metrics"),
}


@dataclass(frozen=True)
class TimeRange:
    """A dashboard's time picker: instant queries run at `end`, range queries over [start, end] by `step`."""

    start: int
    end: int
    step: int

    def variables(self) -> dict[str, str]:
        # Grafana's $__range is to - from; one more millisecond keeps a sample exactly at `from` inside
        # the left-open window (t - range, t], as the dashboard shows it.
        return {"__range": f"{(self.end - self.start) * 1000 + 1}ms", "__interval": f"{self.step}s"}

    def step_of(self, ts: float) -> int:
        """The range-query step whose window (t - step, t] holds a sample taken at `ts`."""
        return self.start + math.ceil((ts - self.start) / self.step) * self.step

    def grid(self) -> range:
        return range(self.start, self.end + 1, self.step)


HISTORY = TimeRange(int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()), int(datetime(2026, 11, 20, tzinfo=UTC).timestamp()), 86400)
DETAIL_RANGE = TimeRange(int(DETAIL.started_at.timestamp()) - 3600, int(DETAIL.started_at.timestamp()) + 3600, 15)
KUBEVIRT_RANGE = TimeRange(*window(DETAIL), 15)
RANGES = {"livedrill-drill-history": HISTORY, "livedrill-drill-detail": DETAIL_RANGE, "livedrill-kubevirt-migrations": KUBEVIRT_RANGE}


@dataclass
class Expect:
    keys: tuple[str, ...]  # the labels that tell the result's series apart
    values: dict  # key tuple -> value (instant) or {step unix seconds: value} (range)
    rel: float = 1e-9
    fixed: dict[str, str] = field(default_factory=dict)  # labels every series must carry


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("archive")
    signer = Signer.generate()
    return [write_sample_run(root, d, signer) for d in QUARTERLY]


@pytest.fixture(scope="module")
def run_ids(run_dirs) -> list[str]:
    return [p.name for p in run_dirs]


@pytest.fixture(scope="module", params=list(STORES))
def store(request, run_dirs, tmp_path_factory):
    binary, start, kind, path, debian = STORES[request.param]
    if binary is None:
        pytest.skip(f"{request.param} is not installed (Debian package {debian})")
    with start(tmp_path_factory.mktemp(request.param)) as running:
        sink = PushSink(kind=kind, url=running.base_url + path, retry_deadline_s=10)
        config = MetricsConfig(push=[sink])
        for run_dir in [*run_dirs, run_dirs[0]]:  # the first run twice: re-exporting a run is harmless
            report = export_run(run_dir, config)
            assert report.ok, report.sinks
            assert report.sinks[0].pushed.samples == report.samples > 0
        push_samples(kubevirt_samples(DRILLS_A), sink)
        if running.kind == "victoriametrics":
            httpx.get(running.base_url + "/internal/force_flush", timeout=10).raise_for_status()
        yield running


def _api(store, path: str, params: dict) -> list[dict]:
    response = httpx.post(f"{store.base_url}/api/v1/{path}", data=params, timeout=30)
    assert response.status_code == 200, f"{params.get('query')}: HTTP {response.status_code} {response.text[:500]}"
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"] if isinstance(body["data"], dict) else body["data"]


def run_query(store, query: PanelQuery, variables: dict[str, str], time_range: TimeRange) -> dict:
    expr = substitute(query.expr, {**variables, **time_range.variables()})
    if query.instant:
        result = _api(store, "query", {"query": expr, "time": str(time_range.end)})
        return {"expr": expr, "series": [(s["metric"], float(s["value"][1])) for s in result]}
    result = _api(store, "query_range", {"query": expr, "start": str(time_range.start), "end": str(time_range.end),
                                         "step": str(time_range.step)})
    return {"expr": expr, "series": [(s["metric"], {int(float(t)): float(v) for t, v in s["values"]}) for s in result]}


# ---------------------------------------------------------------- what each panel must show


LE = ("0.0005", "0.001", "0.002", "0.003", "0.005", "0.0075", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")


def cumulative_counts(latencies_ms: list[float]) -> dict[str, int]:
    return {le: sum(1 for v in latencies_ms if le == "+Inf" or v / 1000 <= float(le)) for le in LE}


def histogram_quantile(q: float, counts: dict[str, int]) -> float:
    """Prometheus' estimate: the bucket holding rank q*count, linear inside it (the first bucket starts at 0)."""
    total = counts["+Inf"]
    rank = q * total
    lower, below = 0.0, 0
    for le in LE:
        if counts[le] >= rank:
            if le == "+Inf":
                return lower
            return lower + (float(le) - lower) * (rank - below) / (counts[le] - below)
        lower, below = float(le), counts[le]
    raise AssertionError("unreachable: +Inf holds every observation")


def _phase_durations(d: SampleDrill) -> dict[tuple, float]:
    return {(p,): round(d.phases[i + 1][1] - at, 9) for i, (p, at) in enumerate(d.phases[:-1])}


def expectations(run_ids: list[str]) -> dict[tuple[str, str, str], Expect]:
    h, dd, kv = "livedrill-drill-history", "livedrill-drill-detail", "livedrill-kubevirt-migrations"
    d = DETAIL
    series_a = ("prod-core-a", "banking-core-quarterly")
    quarters: dict[tuple, float] = {}
    for x in DRILLS_A:
        quarters[(x.quarter, x.outcome.value)] = quarters.get((x.quarter, x.outcome.value), 0) + 1
    rollbacks: dict[tuple, float] = {}
    for x in DRILLS_A:
        ran = sum(state in (CompensationState.DONE, CompensationState.FAILED) for _a, state in x.compensations)
        rollbacks[(x.quarter,)] = rollbacks.get((x.quarter,), 0) + ran
    detail_gaps: dict[int, float] = {}
    for g in d.gaps:
        t = DETAIL_RANGE.step_of((d.created_at + timedelta(seconds=g.end_s)).timestamp())
        detail_gaps[t] = max(detail_gaps.get(t, 0.0), g.duration_ms / 1000)
    created = d.created_at.timestamp()
    terminal = created + d.phases[-1][1]
    on_run = {"run_id": run_ids[DETAIL_INDEX]}
    during_all = [v for x in DRILLS_A for v in x.latencies_ms("during")]
    return {
        (h, "Probe latency during migrations, p99 over all drills", "A"): Expect(
            (), {(): histogram_quantile(0.99, cumulative_counts(during_all))}, rel=1e-6),
        (h, "Drills per quarter by outcome", "A"): Expect(("quarter", "outcome"), quarters),
        (h, "Pass rate", "A"): Expect((), {(): sum(x.outcome is DrillOutcome.PASSED for x in DRILLS_A) / len(DRILLS_A)}),
        (h, "Drills over the downtime SLO", "A"): Expect((), {(): float(sum(x.observed_downtime_ms > x.slo_downtime_ms for x in DRILLS_A))}),
        (h, "Observed downtime per drill against the SLO", "A"): Expect(("cluster", "drill"), {series_a: {
            HISTORY.step_of(x.ended_at.timestamp()): x.observed_downtime_ms / 1000 for x in DRILLS_A}}),
        (h, "Observed downtime per drill against the SLO", "B"): Expect(("cluster", "drill"), {series_a: {
            HISTORY.step_of(x.ended_at.timestamp()): x.slo_downtime_ms / 1000 for x in DRILLS_A}}),
        (h, "Rollback actions run per quarter", "A"): Expect(("quarter",), rollbacks),
        (h, "Drill runs", "A"): Expect(("run_id",), {(run_ids[QUARTERLY.index(x)],): x.ended_at.timestamp() * 1000 for x in DRILLS_A}),
        (h, "Drill runs", "B"): Expect(("run_id",), {(run_ids[QUARTERLY.index(x)],): x.observed_downtime_ms / 1000 for x in DRILLS_A}),

        (dd, "Result", "A"): Expect(("outcome",), {(d.outcome.value,): 1.0 if d.outcome is DrillOutcome.PASSED else 0.0}, fixed=on_run),
        (dd, "Observed downtime and SLO", "A"): Expect((), {(): d.observed_downtime_ms / 1000}, fixed=on_run),
        (dd, "Observed downtime and SLO", "B"): Expect((), {(): d.slo_downtime_ms / 1000}, fixed=on_run),
        (dd, "Migration", "A"): Expect(("vm", "node", "target_node"), {(VM, d.source, d.target): d.phases[-1][1]}, fixed=on_run),
        (dd, "Migration", "B"): Expect(("vm",), {(VM,): 1.0}, fixed=on_run),
        (dd, "Transactions failed / lost / duplicated", "A"): Expect((), {(): float(d.failed_requests)}),
        (dd, "Transactions failed / lost / duplicated", "B"): Expect((), {(): float(d.lost)}),
        (dd, "Transactions failed / lost / duplicated", "C"): Expect((), {(): float(d.duplicated)}),
        (dd, "Migration phase timeline: time in each phase", "A"): Expect(("phase",), _phase_durations(d), fixed=on_run),
        (dd, "Migration phase timeline: when each phase began", "A"): Expect(("phase",), {(p,): at for p, at in d.phases}, fixed=on_run),
        (dd, "Probe latency by window", "A"): Expect(("window", "quantile"), {
            (w, q): v / 1000 for w, figures in d.latency_ms.items() for q, v in zip(("0.5", "0.95", "0.99", "1"), figures)}, fixed=on_run),
        (dd, "Probe latency histogram", "A"): Expect(("window", "le"), {
            (w, le): float(n) for w in d.requests for le, n in cumulative_counts(d.latencies_ms(w)).items()}),
        (dd, "p99 latency from the histogram", "A"): Expect(("window",), {
            (w,): histogram_quantile(0.99, cumulative_counts(d.latencies_ms(w))) for w in d.requests}, rel=1e-6),
        (dd, "Gaps between successful probes", "A"): Expect(("probe", "window"), {("core-transfer", "during"): detail_gaps}),
        (dd, "Longest gap per probe", "A"): Expect(("probe",), {("core-transfer",): d.observed_downtime_ms / 1000}, fixed=on_run),
        (dd, "Probe requests and failures", "A"): Expect(("window", "result"), {
            (w, r): float(n) for w, (ok, failed) in d.requests.items() for r, n in (("ok", ok), ("failed", failed))}, fixed=on_run),
        (dd, "Probe requests and failures", "B"): Expect(("kind",), {(k,): float(n) for k, n in d.failures_by_kind.items()}, fixed=on_run),
        (dd, "Rollback actions", "A"): Expect(("state",), {
            (s.value,): float(sum(state is s for _a, state in d.compensations)) for s in CompensationState}, fixed=on_run),

        (kv, "Migrations finished by status", "A"): Expect(("status",), {("succeeded",): 1.0}),
        (kv, "Migration success rate", "A"): Expect((), {(): 1.0}),
        (kv, "Migration duration", "A"): Expect(("migration_name",), {(migration_name(DETAIL_INDEX),): float(int(terminal) - int(created))}),
        # increase() extrapolates by up to the 1 ms margin of $__range: a few parts per million.
        (kv, "Phase reached, p95 seconds after creation", "A"): Expect(("phase",), {(p,): p95_in_bucket(at) for p, at in d.phases}, rel=1e-4),
        (kv, "Migrations in flight", "A"): Expect((), {(): {t: in_flight(d, t)["pending"] for t in KUBEVIRT_RANGE.grid()}}),
        (kv, "Migrations in flight", "B"): Expect((), {(): {t: in_flight(d, t)["scheduling"] for t in KUBEVIRT_RANGE.grid()}}),
        (kv, "Migrations in flight", "C"): Expect((), {(): {t: in_flight(d, t)["running"] for t in KUBEVIRT_RANGE.grid()}}),
        (kv, "Data remaining to migrate", "A"): Expect(("namespace", "name"), {("banking", "banking-core-vm"): {
            t: data_remaining(d, t) for t in KUBEVIRT_RANGE.grid()}}),
        (kv, "Memory transfer rate", "A"): Expect(("namespace", "name"), {("banking", "banking-core-vm"): {
            t: transfer_rate(d, t) for t in KUBEVIRT_RANGE.grid()}}),
        (kv, "Drill observed downtime", "A"): Expect(("cluster", "drill"), {series_a: {
            KUBEVIRT_RANGE.step_of(d.ended_at.timestamp()): d.observed_downtime_ms / 1000}}),
    }


def variables(run_ids: list[str]) -> dict[str, str]:
    return {"datasource": "unused-by-promql", "cluster": CLUSTER, "drill": "banking-core-quarterly",
            "run_id": run_ids[DETAIL_INDEX], "namespace": "banking"}


# ---------------------------------------------------------------- tests


def test_dashboards_import_with_any_prometheus_datasource():
    """What Grafana's import needs: a datasource variable every panel, target and variable points at;
    unique ids and refIds; panels inside the 24-column grid; only livedrill metrics that are exported."""
    boards = dashboards()
    assert set(boards) == {"livedrill-drill-history", "livedrill-drill-detail", "livedrill-kubevirt-migrations"}
    selected = {"type": "prometheus", "uid": "${datasource}"}
    for uid, board in boards.items():
        variables_ = board["templating"]["list"]
        assert variables_[0]["type"] == "datasource" and variables_[0]["name"] == "datasource" and variables_[0]["query"] == "prometheus"
        assert all(v["datasource"] == selected for v in variables_[1:]), uid
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), uid
        for panel in board["panels"]:
            where = f"{uid}: {panel['title']}"
            assert panel["datasource"] == selected, where
            assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                assert target["datasource"] == selected, where
                for name in re.findall(r"\blivedrill_[a-z_]+", target["expr"]):
                    assert family_of(name) in CATALOGUE, f"{where}: {name} is not a metric livedrill exports"


def test_every_dashboard_query_has_an_expectation():
    """A panel added without saying what it must show fails here, and so does a stale expectation."""
    queries = {q.key for q in panel_queries()}
    expected = set(expectations([f"run-{i}" for i in range(len(QUARTERLY))]))
    assert queries == expected, {"untested": sorted(queries - expected), "stale": sorted(expected - queries)}
    assert len(queries) >= 30


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: f"{q.dashboard}:{q.panel}:{q.ref}")
def test_panel_query(store, run_ids, query: PanelQuery):
    check_result(store, run_query(store, query, variables(run_ids), RANGES[query.dashboard]), expectations(run_ids)[query.key])


def check_result(store, got: dict, expect: Expect) -> None:
    by_key: dict[tuple, object] = {}
    for labels, value in got["series"]:
        for name, want in expect.fixed.items():
            assert labels.get(name) == want, f"{got['expr']}: series {labels} should carry {name}={want}"
        key = tuple(labels.get(k, "") for k in expect.keys)
        assert key not in by_key, f"{got['expr']}: two series for {key}"
        by_key[key] = value
    assert set(by_key) == set(expect.values), f"{store.kind} {got['expr']}: series {sorted(by_key)} != {sorted(expect.values)}"
    for key, want in expect.values.items():
        if isinstance(want, dict):
            assert set(by_key[key]) == set(want), f"{store.kind} {got['expr']} {key}: steps {sorted(by_key[key])} != {sorted(want)}"
            for t, v in want.items():
                assert by_key[key][t] == pytest.approx(v, rel=expect.rel), f"{store.kind} {got['expr']} {key} at {t}"
        else:
            assert by_key[key] == pytest.approx(want, rel=expect.rel), f"{store.kind} {got['expr']} {key}"


def test_variable_queries(store, run_ids):
    """Each template variable's label_values() as Grafana sends it (the series-matching label values API)."""
    wanted = {
        "cluster": {d.cluster for d in QUARTERLY},
        "drill": {"banking-core-quarterly"},
        "run_id": {run_ids[QUARTERLY.index(d)] for d in DRILLS_A},
        "namespace": {"banking"},
    }
    checked = 0
    for var in variable_queries():
        # Over the year, as a user picking a past run widens the time picker first.
        params = {"start": str(HISTORY.start), "end": str(HISTORY.end)}
        if var.match:
            params["match[]"] = substitute(var.match, variables(run_ids))
        response = httpx.get(f"{store.base_url}/api/v1/label/{var.label}/values", params=params, timeout=30)
        assert response.status_code == 200, response.text
        assert set(response.json()["data"]) == wanted[var.name], (var, response.json()["data"])
        checked += 1
    assert checked == len(variable_queries()) >= 6


def test_kubevirt_evidence_for_the_drill_window(store, run_dirs):
    """The evidence query reads KubeVirt's series for the run's own window, through the Prometheus API."""
    config = MetricsConfig(kubevirt=PrometheusQuery(url=store.base_url, step_s=15, margin_s=120))
    evidence = kubevirt_evidence_for_run(run_dirs[DETAIL_INDEX], config, [VMRef.parse(VM)])
    assert evidence is not None and evidence.errors == []
    results = {r.name: r for r in evidence.results}
    assert set(results) == {f"{VM} by name", f"{VM} by vmi", "migrations in flight"}
    by_name = {s.metric["__name__"] for s in results[f"{VM} by name"].series}
    assert by_name == {"kubevirt_vmi_migration_start_time_seconds", "kubevirt_vmi_migration_end_time_seconds",
                       "kubevirt_vmi_migration_data_remaining_bytes", "kubevirt_vmi_migration_memory_transfer_rate_bytes"}
    end = next(s for s in results[f"{VM} by name"].series if s.metric["__name__"] == "kubevirt_vmi_migration_end_time_seconds")
    terminal = int(DETAIL.created_at.timestamp() + DETAIL.phases[-1][1])
    assert end.metric["migration_name"] == migration_name(DETAIL_INDEX)
    assert {float(v) for _t, v in end.values} == {float(terminal)}
    assert evidence.start <= DETAIL.started_at and evidence.end >= DETAIL.ended_at
    assert all(evidence.start.timestamp() - 1 <= t <= evidence.end.timestamp() + 1
               for r in evidence.results for s in r.series for t, _v in s.values)
    by_vmi = {s.metric["__name__"] for s in results[f"{VM} by vmi"].series}
    assert by_vmi == {f"kubevirt_vmi_migration_phase_transition_time_from_creation_seconds_{x}" for x in ("bucket", "count", "sum")}
    assert {s.metric["__name__"] for s in results["migrations in flight"].series} == {
        f"kubevirt_vmi_migrations_in_{p}_phase" for p in ("pending", "scheduling", "running")}


def test_prefect_tasks_record_evidence_then_export(store, tmp_path):
    """The flow's order: KubeVirt evidence into the open run, seal, then push the run's metrics."""
    # Its own cluster, so the store's other tests (counts per cluster) do not see this run.
    run_dir = write_sample_run(tmp_path / "archive", replace(DETAIL, cluster="task-test"), signer=None)
    config = MetricsConfig(kubevirt=PrometheusQuery(url=store.base_url, step_s=15),
                           push=[PushSink(kind=STORES[store.kind][2], url=store.base_url + STORES[store.kind][3])])
    with disable_run_logger():
        evidence = kubevirt_metrics_evidence.fn(str(run_dir), config, [VMRef.parse(VM)])
        manifest = Archive(run_dir.parent).find(run_dir.name).seal(Signer.generate())
        report = export_metrics.fn(str(run_dir), config)
    stored = KubeVirtMetricsEvidence.model_validate_json((run_dir / "metrics/kubevirt-migration.json").read_bytes())
    assert stored == evidence and evidence.errors == [] and evidence.results[0].series
    assert "metrics/kubevirt-migration.json" in {f.path for f in manifest.files}
    assert report.ok and report.sinks[0].pushed.samples == report.samples
