"""Benchmark: seal N drill runs into an archive, then time `verify_archive` over all of them.

Each generated run is what a lab drill writes: spec.yaml, run.json, preflight.json (with the VMI it
judged), a 40-line timeline, four raw platform objects (VMI/VMIM before and after, ~3-6 KB each),
the probe report, compensations, post-checks, the verdict, and one incompressible probe series
file (default 1 MiB: ~10 minutes at 100 transactions/s, 16-byte samples). Runs are written and
sealed through the public API (redaction, atomic writes, fsync), so generation time is also the
sealing cost. Verification reads from the page cache (the archive was just written); the machine
and its load are printed with the figures.

    .venv/bin/python benchmarks/verify_archive.py [--runs 1000] [--series-bytes 1048576] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from livedrill.evidence.archive import Archive, EvidenceRun
from livedrill.evidence.keys import Signer
from livedrill.evidence.verify import DEFAULT_HASH_WORKERS, format_problems, verify_archive
from livedrill.outcomes import CheckResult, CheckStatus, Compensation, CompensationState, DrillOutcome, PreflightResult, TimelineEvent, Verdict

SPEC = """\
name: bench-targeted
cluster: lab
platform: {kind: kubevirt}
vms: [{namespace: banking, name: banking-core-vm}]
mode: {kind: targeted, target_node: node-2}
"""


def _vmi(node: str, pad: int) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "banking-core-vm", "namespace": "banking", "labels": {"app": "banking-core", "tier": "core"}},
        "spec": {
            "domain": {"cpu": {"cores": 4, "dedicatedCpuPlacement": True}, "resources": {"requests": {"memory": "8Gi"}}},
            "volumes": [{"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: changeme\n"}}],
        },
        "status": {
            "nodeName": node,
            "phase": "Running",
            "conditions": [{"type": "LiveMigratable", "status": "True", "message": "x" * pad}],
            "migrationState": {"sourceNode": "node-1", "targetNode": "node-2", "completed": True, "failed": False},
        },
    }


def write_run(run: EvidenceRun, series: bytes, t0: datetime) -> None:
    run.write_text("spec.yaml", SPEC)
    run.write_json("run.json", {"run_id": run.run_id, "drill": "bench-targeted", "started_at": t0, "outcome": DrillOutcome.PASSED, "operator": "bench"})
    run.write_json("preflight.json", PreflightResult(checks=[CheckResult(name="live-migratable", status=CheckStatus.PASS, message="ok", evidence={"vmi": _vmi("node-1", 1000)})]))
    for i in range(40):
        run.append_jsonl("timeline.jsonl", TimelineEvent(at=t0 + timedelta(seconds=i), monotonic=float(i), source="vmim", kind="phase", detail={"phase": "Running", "i": i}))
    run.write_json("objects/vmi-before.json", _vmi("node-1", 2000))
    run.write_json("objects/vmi-after.json", _vmi("node-2", 2000))
    run.write_json("objects/vmim.json", {"kind": "VirtualMachineInstanceMigration", "status": {"phase": "Succeeded", "pad": "y" * 3000}})
    run.write_json("objects/versions.json", {"livedrill": "0.1.0", "kubevirt": "v1.9.0"})
    run.stream_path("probe/ledger.series").write_bytes(series)
    run.write_json("probe/report.json", {"sent": 60000, "lost": 0, "p99_ms": 3.2})
    run.write_json("compensations.json", [Compensation(id=1, action="cancel-migration", params={}, registered_at=t0, state=CompensationState.NOT_NEEDED)])
    run.write_json("postcheck.json", [CheckResult(name="vm-running", status=CheckStatus.PASS, message="ok")])
    run.write_json("verdict.json", Verdict(outcome=DrillOutcome.PASSED, observed_downtime_ms=40.0))


def _du(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--series-bytes", type=int, default=1 << 20)
    parser.add_argument("--workers", type=int, default=DEFAULT_HASH_WORKERS, help="hashing threads for verify")
    parser.add_argument("--keep", type=Path, help="build the archive here and keep it (default: a temp dir, removed)")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="livedrill-bench-"))
    root = workdir / "archive"
    try:
        signer = Signer.generate()
        archive = Archive(root)
        # One drill a day for years: a quarter's audit then re-hashes ~90 runs and checks the chain of all.
        start = datetime(2024, 1, 1, tzinfo=timezone.utc)
        last = start + timedelta(days=args.runs - 1)
        quarter = f"{last.year}Q{(last.month - 1) // 3 + 1}"
        t = time.perf_counter()
        for i in range(args.runs):
            run = archive.new_run("bench-targeted", now=start + timedelta(days=i))
            write_run(run, os.urandom(args.series_bytes), start)
            run.seal(signer)
        generate_s = time.perf_counter() - t
        files, size = _du(root)

        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
        print(f"archive: {args.runs} sealed runs, {files} files, {size / 2**20:.0f} MiB (series file {args.series_bytes} bytes per run) in {root}")
        print(f"generate+seal: {generate_s:.1f} s ({generate_s / args.runs * 1000:.1f} ms per run)")
        for label, kwargs in (("verify_archive (all runs)", {}), (f"verify_archive --quarter {quarter}", {"quarter": quarter})):
            t = time.perf_counter()
            problems = verify_archive(root, hash_workers=args.workers, **kwargs)
            elapsed = time.perf_counter() - t
            status = "OK" if not problems else f"{len(problems)} PROBLEMS"
            print(f"{label}: {elapsed:.2f} s, {args.workers} hashing threads, page cache warm, {status}  [target <= 10 s]")
            if problems:
                print(format_problems(problems[:10]), file=sys.stderr)
                return 1
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
