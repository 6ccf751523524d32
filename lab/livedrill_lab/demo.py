"""`livedrill demo` (what `make demo` runs): a fresh lab, one targeted drill, the verdict beside the lab's ground truth."""

from __future__ import annotations

import sys
from pathlib import Path

from livedrill.outcomes import ExitCode
from livedrill.spec import SpecError, load_spec
from livedrill_lab.manager import lab_status, start_lab, stop_lab


def freeze_for(freezes: list[dict], vm: str) -> dict | None:
    """The lab's ground-truth freeze of `vm` during the drill (the last one recorded for it)."""
    mine = [f for f in freezes if f.get("vmi") == vm and "frozen_ms" in f]
    return mine[-1] if mine else None


def run_demo(state_dir: Path, spec_path: Path) -> int:
    from livedrill.cli import print_verdict, run_drill, start_prefect_api
    from livedrill.evidence.verify import format_problems, verify_run

    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return ExitCode.BAD_INPUT
    if lab_status(state_dir) is not None:
        print(f"restarting the lab in {state_dir} so the drill starts from the preset's state")
        stop_lab(state_dir)
    api = start_prefect_api()  # boots while the lab starts
    print(f"starting the embedded KubeVirt lab in {state_dir} ...")
    info = start_lab(state_dir)
    print(f"lab up: Kubernetes API {info.api_url}; workloads: {info.ledger_urls}")
    print(f"running drill {spec.name} ({spec_path}) ...")
    verdict = run_drill(spec, spec_path.read_text(encoding="utf-8"), api=api)
    print_verdict(verdict)

    vm = str(spec.vms[0])
    freeze = freeze_for(info.freezes(), vm)
    if freeze and verdict.observed_downtime_ms is not None:
        print(f"lab ground truth: {vm} was really frozen for {freeze['frozen_ms']:.1f} ms "
              f"(modelled stop-and-copy {freeze['modelled_downtime_ms']:.1f} ms); the probes measured a "
              f"{verdict.observed_downtime_ms:.1f} ms gap (difference {verdict.observed_downtime_ms - freeze['frozen_ms']:+.1f} ms, "
              f"bounded by one probe period plus request latency)")
    if verdict.evidence_dir:
        problems = verify_run(Path(verdict.evidence_dir))
        print("evidence integrity verified: hashes, signature and chain intact (signed by the lab's own key: an auditor "
              "pins it with `livedrill evidence verify --trusted-key`)" if not problems else format_problems(problems))
    print(f"\nthe lab keeps running:  .venv/bin/kubectl --kubeconfig {info.kubeconfig} get vmi,vmim -A")
    print("stop it with:           .venv/bin/livedrill lab down")
    return verdict.outcome.exit_code
