"""The drills already run, read from the evidence archive: each sealed targeted drill is one record per VM.

Only sealed runs count: an unsealed one is a drill in progress or one whose process died, which
`livedrill recover` seals first. A drill that ended in ERROR changed nothing (bad input, platform not
reached), so it neither covers a VM nor is a deficiency; a drain covers nodes, not the per-VM coverage.
"""

from __future__ import annotations

from pathlib import Path

from livedrill.errors import InputError
from livedrill.evidence.archive import Archive
from livedrill.evidence.export_summary import DrillSummary, summarize_run
from livedrill.evidence.records import is_record_run
from livedrill.outcomes import DrillOutcome
from livedrill.programme.plan import DrillRecord

_OUTCOMES = {DrillOutcome.PASSED.value: "passed", DrillOutcome.FAILED.value: "failed"}


def records_of(summary: DrillSummary) -> list[DrillRecord]:
    """Pure: the per-VM drill records one sealed run stands for (none for a drain, an ERROR or no cluster)."""
    outcome = _OUTCOMES.get(summary.outcome)
    if summary.mode != "targeted" or outcome is None or not summary.cluster:
        return []
    at = summary.started_at or summary.sealed_at
    return [DrillRecord(cluster=summary.cluster, vm=vm, at=at, outcome=outcome, run=summary.run_id)
            for vm in summary.vms]


def archive_history(root: Path) -> list[DrillRecord]:
    """Every sealed targeted drill of the archive at `root` (read only)."""
    if not Path(root).is_dir():
        raise InputError(f"--archive: no evidence archive at {root}")
    return [record for run in Archive(root).runs() if run.sealed and not is_record_run(run.path)
            for record in records_of(summarize_run(run.path))]
