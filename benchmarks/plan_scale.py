"""Planning a quarter for a large core tier: time and peak memory of the pure planner.

    .venv/bin/python benchmarks/plan_scale.py [--vms 5000] [--clusters 20] [--windows 13] [--vms-per-drill 5]

The programme: `--clusters` KubeVirt clusters, `--windows` weekly windows of 4 hours (Saturdays 01:00-05:00
Asia/Shanghai from 2027-01-02, no change freeze), drills from drills/banking-core-quarterly.yaml with its
budgets replaced by KubeVirt's default completionTimeoutPerGiB (150 s/GiB, 60 s floor, 60 s warm-up and
cool-down), 300 s set-up per drill, up to `--vms-per-drill` VMs per drill (default 5, KubeVirt's
parallelMigrationsPerCluster) and 2 per source node (parallelOutboundMigrationsPerNode). The inventory:
`--vms` VMs spread evenly over the clusters, 8 nodes each, memory 2/4/8/16 GiB (every size on every node);
history: 10 % of the VMs passed this quarter already, 5 % failed once (retests after a 7-day cool-off),
50 % passed in an earlier quarter. The plan is made as of 2026-12-20.

Figures: plan time (make_plan only; the inventory and history are built beforehand), best and median of
`--repeat` runs; peak Python memory allocated during one more run (tracemalloc, which slows that run, so
it is not timed); the process's peak RSS (resource.getrusage) with the interpreter and imports. Targets of
the programme's issue: <= 1 s and <= 200 MB. Figures only: nothing here asserts them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from livedrill.programme.inventory import Inventory, Target
from livedrill.programme.plan import DrillRecord, make_plan
from livedrill.programme.spec import Programme, ProgrammeSpec
from livedrill.spec import Budgets, load_spec

ROOT = Path(__file__).resolve().parents[1]
ZONE = ZoneInfo("Asia/Shanghai")
PLANNED_AT = datetime(2026, 12, 20, tzinfo=ZONE)
GIB_CYCLE = (2, 4, 8, 16)
NODES_PER_CLUSTER = 8


def build_programme(clusters: int, windows: int, vms_per_drill: int) -> Programme:
    first = date(2027, 1, 2)
    slots = [{"start": f"{first + timedelta(weeks=i)}T01:00", "end": f"{first + timedelta(weeks=i)}T05:00"}
             for i in range(windows)]
    spec = ProgrammeSpec.model_validate({
        "kind": "programme", "name": "plan-scale", "quarter": "2027Q1",
        "clusters": [{"name": f"core-{c:02d}", "platform": {"kind": "kubevirt"},
                      "limits": {"vms_per_drill": vms_per_drill, "outbound_per_node": 2}} for c in range(clusters)],
        "windows": {"timezone": "Asia/Shanghai", "slots": slots},
        "drill": {"spec": "../banking-core-quarterly.yaml", "setup_s": 300},
        "retest": {"cool_off_days": 7, "max_attempts": 3},
        "sign_off": {"roles": ["change-manager"]}})
    template = load_spec(ROOT / "drills" / "banking-core-quarterly.yaml")
    budgets = Budgets(migration_timeout_per_gib_s=150, min_migration_timeout_s=60, warmup_s=60, cooldown_s=60)
    return Programme(spec=spec, template=template.model_copy(update={"budgets": budgets}))


def build_inputs(vms: int, clusters: int) -> tuple[Inventory, list[DrillRecord]]:
    targets, history = [], []
    for i in range(vms):
        cluster, k = f"core-{i % clusters:02d}", i // clusters  # k: the VM's number within its cluster
        target = Target(cluster=cluster, vm=f"banking/core-{i:05d}", node=f"{cluster}-n{k % NODES_PER_CLUSTER}",
                        gib=GIB_CYCLE[(k // NODES_PER_CLUSTER) % len(GIB_CYCLE)], labels={"tier": "core"})
        targets.append(target)
        bucket = k % 20
        if bucket < 2:
            history.append(DrillRecord(cluster=cluster, vm=target.vm, at=datetime(2027, 1, 2, 2, tzinfo=ZONE),
                                       outcome="passed"))
        elif bucket == 2:
            history.append(DrillRecord(cluster=cluster, vm=target.vm, at=datetime(2027, 1, 2, 3, tzinfo=ZONE),
                                       outcome="failed"))
        if bucket < 10:
            history.append(DrillRecord(cluster=cluster, vm=target.vm,
                                       at=datetime(2026, 10, 3 + bucket, 2, tzinfo=ZONE), outcome="passed"))
    return Inventory(targets=targets), history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=5000, help="VMs in scope")
    parser.add_argument("--clusters", type=int, default=20, help="KubeVirt clusters")
    parser.add_argument("--windows", type=int, default=13, help="weekly 4-hour windows (at most 13 in a quarter)")
    parser.add_argument("--vms-per-drill", type=int, default=5,
                        help="VMs migrated together per drill (1: today's targeted drill)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs")
    args = parser.parse_args()

    programme = build_programme(args.clusters, args.windows, args.vms_per_drill)
    inventory, history = build_inputs(args.vms, args.clusters)

    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        plan = make_plan(programme, inventory, history, PLANNED_AT)
        times.append(time.perf_counter() - started)

    tracemalloc.start()
    make_plan(programme, inventory, history, PLANNED_AT)
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    drills = [d for w in plan.windows for d in w.drills]
    planned = sum(len(d.vms) for d in drills)
    print("conditions:")
    print(f"  {args.vms} VMs over {args.clusters} clusters ({NODES_PER_CLUSTER} nodes each), {args.windows} weekly "
          f"windows of 4 h, memory {'/'.join(map(str, GIB_CYCLE))} GiB on every node, {len(history)} history records")
    print("  budgets 150 s/GiB (60 s floor), 60 s warm-up and cool-down, 300 s set-up per drill; "
          f"{args.vms_per_drill} VM(s) per drill, 2 per source node")
    print(f"  Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU(s) shared, "
          f"{args.repeat} timed runs")
    print("plan:")
    print(f"  {planned} VMs in {len(drills)} drills; {len(plan.covered)} covered already, "
          f"{len(plan.unplaced)} cannot fit, {len(plan.open_deficiencies)} open deficiencies")
    print("figures:")
    print(f"  plan time: best {min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms "
          f"(target <= 1000 ms)")
    print(f"  peak memory allocated while planning (tracemalloc): {peak_traced / 2**20:.1f} MiB (target <= 200 MB)")
    print(f"  peak RSS of the process (getrusage, interpreter and inputs included): {peak_rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
