"""A 100-VMI node drain on the lab: wall time against the bound from parallelism x per-VM migration time,
and what the orchestrator costs (peak RSS, CPU).

    .venv/bin/python benchmarks/drain_scale.py [--rate 50] [--poll 0.5] [--flow]

Starts the lab with the `drain-100` preset in a temp dir (node-1: 4 core VMs of 256Mi, each with its own
ledger process, and 96 non-core VMs of 64Mi without a workload process), runs the drain stage
(livedrill.stages.drain.run_drain: pre-flight, cordon, evictions with KubeVirt's 429 as progress, waiting
until every VMI has left, per-VM verdicts, uncordon) with a transaction probe at `--rate` per second
against each core VM, in this process, without Prefect; with --flow, the whole Prefect drill flow instead
(against a temporary Prefect API server, a child process reported apart). Prints the figures and the
conditions, then stops the lab. Figures only: nothing here asserts a time.

The bound: each migration's duration as the lab's controller models it (4 phase steps of `phase_step_s`,
then pre-copy and stop-and-copy from `livedrill_lab.kube.precopy` with the preset's settings), placed in
creation order on min(parallelMigrationsPerCluster, parallelOutboundMigrationsPerNode) lanes
(`livedrill.drain.list_schedule_makespan_s`). The drain's wall time runs from the cordon until the loop
observed every VMI off the node and no pod left to evict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

from livedrill.drain import DrainSettings, drain_lanes, list_schedule_makespan_s, migration_parallelism
from livedrill_lab.kube.config import ControllerConfig
from livedrill_lab.kube.policy import effective_settings
from livedrill_lab.kube.precopy import PrecopyInputs, plan_precopy
from livedrill_lab.manager import start_lab, stop_lab
from livedrill_lab.presets import load_preset
from livedrill.outcomes import CheckStatus
from livedrill.quantity import parse_quantity
from livedrill.spec import DrillSpec
from livedrill.stages.drain import run_drain
from livedrill.stages.preflight import run_preflight
from livedrill.stages.rollback import retire_compensations, run_rollback
from livedrill.stages.session import DrillSession

PRESET = "drain-100"
NODE = "node-1"


class TreeSampler:
    """Peak memory of this process and of its children, sampled every `interval_s`.

    Children are told apart by command line: the probe engine (`livedrill.probe.process`) and the rest (the
    temporary Prefect API server with --flow); the lab's processes (`exclude`, started by this script but not
    part of the orchestrator) are left out. RSS per process; `peak_tree_pss` sums PSS over this process
    and the probe engine (shared pages split between them, so the interpreter is not counted twice).
    """

    def __init__(self, exclude: set[int], interval_s: float = 0.5):
        self.exclude = exclude
        self.interval_s = interval_s
        self.peak_self = self.peak_probe = self.peak_other = self.peak_tree_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                children = [c for c in me.children(recursive=True) if c.pid not in self.exclude]
                probe = [c for c in children if "livedrill.probe.process" in " ".join(c.cmdline())]
                own = me.memory_info().rss
                probe_rss = sum(c.memory_info().rss for c in probe)
                other_rss = sum(c.memory_info().rss for c in children if c not in probe)
                pss = me.memory_full_info().pss + sum(c.memory_full_info().pss for c in probe)
            except psutil.Error:
                continue
            self.peak_self = max(self.peak_self, own)
            self.peak_probe = max(self.peak_probe, probe_rss)
            self.peak_other = max(self.peak_other, other_rss)
            self.peak_tree_pss = max(self.peak_tree_pss, pss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def modelled_durations_s(preset_name: str, controller: ControllerConfig) -> tuple[list[float], dict]:
    """Per-VMI migration time as the lab's controller models it, in the preset's order; and the settings used."""
    preset = load_preset(preset_name)
    cr = next(o.body for o in preset.objects if o.plural == "kubevirts")
    settings = effective_settings(cr, None)
    bandwidth = settings.bandwidth_bytes_per_s or controller.unlimited_bandwidth_bytes_per_s
    durations = []
    for obj in preset.objects:
        if obj.plural != "virtualmachineinstances":
            continue
        memory = int(parse_quantity(obj.body["spec"]["domain"]["memory"]["guest"]))
        plan = plan_precopy(PrecopyInputs(
            memory_bytes=memory, dirty_rate_bytes_per_s=controller.default_dirty_rate_bytes_per_s,
            bandwidth_bytes_per_s=bandwidth, max_downtime_ms=settings.max_downtime_ms,
            progress_timeout_s=settings.progress_timeout_s,
            completion_timeout_per_gib_s=settings.completion_timeout_per_gib_s))
        durations.append(4 * controller.phase_step_s + plan.total_s)
    return durations, {"cr": cr, "bandwidth_bytes_per_s": bandwidth, "settings": settings}


def lab_makespan(run_dir: Path, wall_s: float) -> dict[str, float]:
    """From the copies of the evacuation migrations (1 s timestamps): when the lab ran them, against the cordon."""
    migrations = json.loads((run_dir / "drain" / "evacuations.json").read_text())
    events = [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines() if line]
    cordoned = datetime.fromisoformat(next(e for e in events if e["kind"] == "cordoned")["at"])

    def at(vmim: dict, phase: str) -> datetime | None:
        stamps = [p["phaseTransitionTimestamp"] for p in vmim.get("status", {}).get("phaseTransitionTimestamps", [])
                  if p["phase"] == phase]
        return datetime.fromisoformat(stamps[0].replace("Z", "+00:00")) if stamps else None

    first = min(t for m in migrations if (t := at(m, "Scheduling")))
    last = max(t for m in migrations if (t := at(m, "Succeeded")))
    return {"first_start_s": (first - cordoned).total_seconds(), "last_end_s": (last - cordoned).total_seconds(),
            "lab_span_s": (last - first).total_seconds(), "detect_after_last_s": wall_s - (last - cordoned).total_seconds()}


def run_stage(spec: DrillSpec, poll_s: float) -> tuple[Path, list]:
    """The drain stage in this process, as `livedrill run` sequences it, without Prefect."""
    session = DrillSession.create(spec)
    gate = run_preflight(session)
    failing = [f"{c.name} {c.subject}: {c.message}" for c in gate.checks if c.status is CheckStatus.FAIL]
    if failing or gate.error:
        raise SystemExit(f"pre-flight refused: {gate.error or failing}")
    adapter = session.adapter()
    try:
        result = run_drain(session, adapter, settings=DrainSettings(poll_interval_s=poll_s))
    finally:
        adapter.close()
    if any(c.status is CheckStatus.FAIL for c in result.checks + result.probe_checks):
        run_rollback(session)
    else:
        retire_compensations(session, "benchmark: drain completed")
    return session.run.path, result.checks + result.probe_checks


def run_flow(spec: DrillSpec) -> tuple[Path, list]:
    """The whole Prefect flow (pre-flight, probe smoke, drain task, rollback or retire, sealing) in this process,
    against a temporary Prefect API server (a child process, reported apart)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows.drill import drill

    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        verdict = drill(spec)
    return Path(verdict.evidence_dir), verdict.checks


def drill_spec(lab, rate: float, max_downtime_ms: float, p99_ms: float, evidence: Path) -> DrillSpec:
    core = sorted(lab.ledger_urls)
    probes = [{
        "name": f"ledger-{ref.split('/')[1]}", "vm": ref, "kind": "transaction", "rate_per_s": rate, "timeout_ms": 2000,
        "write": {"method": "POST", "url": f"{lab.ledger_urls[ref]}/transfers", "expect_status": [201],
                  "json": {"id": "{txid}", "from": "acct-drill-a", "to": "acct-drill-b", "amount": 1}},
        "read": {"method": "GET", "url": f"{lab.ledger_urls[ref]}/transfers/{{txid}}", "expect_status": [200],
                 "expect_json": {"id": "{txid}"}},
    } for ref in core]
    return DrillSpec.model_validate({
        "name": "bench-drain-100", "cluster": "bench", "platform": {"kind": "kubevirt", "kubeconfig": str(lab.kubeconfig),
                                                                    "request_timeout_s": 10},
        "vms": [{"namespace": r.split("/")[0], "name": r.split("/")[1]} for r in core],
        "mode": {"kind": "drain", "node": NODE, "delete_emptydir_data": True},
        "probes": probes,
        "slo": {"max_downtime_ms": max_downtime_ms, "p99_latency_ms": p99_ms},
        "budgets": {"warmup_s": 1, "cooldown_s": 1},
        "evidence": {"dir": str(evidence / "evidence"), "signing_key": str(evidence / "signing.pem"),
                     "generate_lab_key": True}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="transactions per second per core VM")
    parser.add_argument("--poll", type=float, default=0.5, help="the drain loop's poll interval (stage mode)")
    parser.add_argument("--flow", action="store_true", help="run the Prefect flow instead of the bare stage")
    # On a shared 2-core host a starved probe alone shows 500 ms gaps; a breach would stop the drain (as it
    # should in a drill) and leave nothing to time. The shipped drill's SLO is 500 ms / 50 ms.
    parser.add_argument("--max-downtime-ms", type=float, default=5000.0, help="SLO: longest probe gap")
    parser.add_argument("--p99-ms", type=float, default=1000.0, help="SLO: p99 probe latency")
    args = parser.parse_args()
    if args.flow:
        os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="livedrill-bench-prefect-"))
        os.environ.update(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")

    controller = ControllerConfig()
    durations, model = modelled_durations_s(PRESET, controller)
    per_cluster, per_node = migration_parallelism(model["cr"])
    lanes = drain_lanes(per_cluster, per_node)
    bound_s = list_schedule_makespan_s(durations, lanes)
    with tempfile.TemporaryDirectory(prefix="livedrill-bench-drain-") as tmp:
        began = time.monotonic()
        lab = start_lab(Path(tmp) / "lab", preset=PRESET, api_port=0, ledger_port_base=0, ready_timeout_s=120)
        print(f"lab up in {time.monotonic() - began:.1f} s: {len(durations)} VMIs on {NODE}, "
              f"{len(lab.ledger_urls)} ledger processes")
        try:
            api = psutil.Process(lab.process("api").pid)
            spec = drill_spec(lab, args.rate, args.max_downtime_ms, args.p99_ms, Path(tmp))
            api_cpu0 = sum(api.cpu_times()[:2])
            times0 = os.times()
            with TreeSampler(exclude={r.pid for r in lab.processes}) as sampler:
                run_dir, checks = run_flow(spec) if args.flow else run_stage(spec, args.poll)
            times1 = os.times()
            api_cpu = sum(api.cpu_times()[:2]) - api_cpu0
            summary = next(c for c in checks if c.name == "drain.completed")
            wall = summary.evidence["wall_s"]
            lab_span = lab_makespan(run_dir, wall)
            compensations = json.loads((run_dir / "compensations.json").read_text())
            evictions: dict[str, int] = {}
            for line in (run_dir / "timeline.jsonl").read_text().splitlines():
                event = json.loads(line)
                if event["kind"] == "eviction":
                    evictions[event["detail"]["answer"]] = evictions.get(event["detail"]["answer"], 0) + 1
        finally:
            stop_lab(Path(tmp) / "lab")

    span_s = times1.elapsed - times0.elapsed
    own_cpu = (times1.user - times0.user) + (times1.system - times0.system)
    child_cpu = (times1.children_user - times0.children_user) + (times1.children_system - times0.children_system)
    statuses: dict[str, int] = {}
    for check in checks:
        if check.name == "drain.vm":
            statuses[check.status.value] = statuses.get(check.status.value, 0) + 1
    settings = model["settings"]
    mode = "Prefect flow (flows.drill.drill)" if args.flow else f"drain stage (run_drain, poll {args.poll} s)"
    print()
    print(f"{mode}: drain of {sum(statuses.values())} VMIs, wall {wall:.1f} s from cordon to drained "
          f"(stop reason: {summary.evidence['stop_reason']}); budget {summary.evidence['budget_s']:.0f} s")
    print(f"bound {bound_s:.1f} s = modelled per-VM times on {lanes} lanes; wall / bound = {wall / bound_s:.3f} "
          f"({(wall / bound_s - 1) * 100:+.1f} %; target within 10 %)")
    print(f"  per-VM modelled time: core 256Mi {max(durations):.2f} s, non-core 64Mi {min(durations):.2f} s "
          f"(4 x phase_step {controller.phase_step_s} s + pre-copy at {model['bandwidth_bytes_per_s'] / 2**20:.0f} MiB/s, "
          f"dirty {controller.default_dirty_rate_bytes_per_s / 2**20:.0f} MiB/s, maxDowntimeMs {settings.max_downtime_ms:g})")
    print(f"  where the time went (1 s timestamps): first migration started {max(0.0, lab_span['first_start_s']):.0f} s after the "
          f"cordon, the lab ran the migrations in {lab_span['lab_span_s']:.0f} s "
          f"({lab_span['lab_span_s'] / bound_s:.2f} x the bound), the loop saw the node drained "
          f"{lab_span['detect_after_last_s']:.1f} s after the last one succeeded")
    print(f"per-VM verdicts: {statuses}; failing checks: "
          f"{[f'{c.name} {c.subject}' for c in checks if c.status is CheckStatus.FAIL][:5]}")
    print(f"eviction answers: {evictions}; compensations: "
          f"{sorted({(c['action'], c['state']) for c in compensations})}")
    print(f"orchestrator peak RSS: {sampler.peak_self / 2**20:.0f} MiB (this process; target <= 300 MB); probe engine "
          f"child {sampler.peak_probe / 2**20:.0f} MiB RSS (both {sampler.peak_tree_pss / 2**20:.0f} MiB PSS); "
          f"other children {sampler.peak_other / 2**20:.0f} MiB RSS")
    print(f"orchestrator CPU over the {span_s:.1f} s run: {own_cpu:.1f} s ({own_cpu / span_s * 100:.0f} % of one core); "
          f"reaped children (probe engine{', Prefect server' if args.flow else ''}) {child_cpu:.1f} s; "
          f"lab API server + controller {api_cpu:.1f} s")
    print(f"conditions: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end, Python {platform.python_version()}, "
          f"lanes = min(parallelMigrationsPerCluster {per_cluster}, parallelOutboundMigrationsPerNode {per_node}), "
          f"probes 4 x {args.rate:g}/s (SLO gap {args.max_downtime_ms:g} ms, p99 {args.p99_ms:g} ms), "
          f"evacuation retry {controller.evacuation_retry_s} s")


if __name__ == "__main__":
    main()
